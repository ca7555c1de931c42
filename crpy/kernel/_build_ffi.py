"""Build recipe of crpy.kernel._sys, the compiled (out-of-line API mode) cffi module.

The declarations come in pieces, one pair of files per subject under crpy/kernel/cdef/:
NAME.cdef (what Python sees, given to ffi.cdef) and NAME.c (the C that implements or includes
it, given to set_source).  Pieces are joined in name order.  Run at install time by setuptools
(cffi_modules) or by `make build` for an in-place build; never at run time.
"""

import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))
_CDEF = os.path.join(_HERE, "cdef")


def _pieces(ext):
    names = sorted(n for n in os.listdir(_CDEF) if n.endswith(ext))
    return "\n".join(open(os.path.join(_CDEF, n)).read() for n in names)


ffi = FFI()
ffi.cdef(_pieces(".cdef"))
# parasite/: C shared with the blobs (crc32c.h: the digest both the parasite and the restore compute)
_PARASITE = os.path.join(os.path.dirname(os.path.dirname(_HERE)), "parasite")
ffi.set_source("crpy.kernel._sys", _pieces(".c"), include_dirs=[_PARASITE],
               extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"])

if __name__ == "__main__":
    # In-place build: python crpy/kernel/_build_ffi.py (run from the project root).
    os.chdir(os.path.dirname(os.path.dirname(_HERE)))
    ffi.compile(verbose=False)
