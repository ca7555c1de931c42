"""The compiled C blobs (parasite, restorer), shipped as generated modules _NAME.py.

tools/build_blobs.py writes them at build time (IMAGE, SIZE, SYMBOLS, RELATIVE); this package
only loads them and produces the bytes to write at a chosen load address.
"""

import importlib
import struct

from crpy.errors import CrpyError


class Blob:
    """One blob: image bytes, loaded size, symbol offsets and relocations to apply."""

    def __init__(self, name, image, size, symbols, relative):
        self.name, self.image, self.size = name, image, size
        self.symbols, self.relative = symbols, relative

    def sym(self, name):
        try:
            return self.symbols[name]
        except KeyError:
            raise CrpyError(f"blob {self.name}: no symbol {name}", "rebuild with `make build`") from None

    def relocated(self, base):
        """The image as it must be written at address `base` (bss is not included)."""
        if not self.relative:
            return self.image
        out = bytearray(self.image)
        for off, addend in self.relative:
            struct.pack_into("<Q", out, off, base + addend)
        return bytes(out)


def load(name):
    """Blob `name` ('parasite' or 'restorer'); a clear error if it was never built."""
    try:
        mod = importlib.import_module(f"crpy.blobs._{name}")
    except ImportError:
        raise CrpyError(f"the {name} blob is not built", "run `make build` (needs gcc and pyelftools)") from None
    return Blob(name, mod.IMAGE, mod.SIZE, mod.SYMBOLS, mod.RELATIVE)
