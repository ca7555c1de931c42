"""Where the lazy-pages daemon gets page bytes: the one interface a remote source plugs into.

A source answers address(name, offset, length): the address, in the daemon's memory, of `length`
bytes of pages image `name` (relative to the images dir, e.g. "pages-1.img" or "pre1/pages-1.img")
from `offset`, valid until the next call.  LocalPages maps the images read-only (copy-on-write
private: UFFDIO_COPY reads straight from the page cache).  A source that cannot deliver raises
SourceGone: the daemon then kills the tasks waiting for those pages rather than let them hang.
"""

import ctypes
import mmap
import os

from crpy.errors import CrpyError


class SourceGone(CrpyError):
    """The pages cannot be had any more (image gone or short, page server gone)."""


class LocalPages:
    def __init__(self, images_dir):
        self.images_dir = images_dir
        self._maps = {}

    def address(self, name, offset, length):
        m = self._maps.get(name)
        if m is None:
            path = os.path.join(self.images_dir, name)
            try:
                with open(path, "rb") as f:
                    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            except (OSError, ValueError) as e:
                raise SourceGone(f"pages image {path}: {e}") from None
            self._maps[name] = m
        if offset + length > len(m):
            raise SourceGone(f"pages image {name} ends at {len(m)}, a page at offset {offset} is missing")
        return ctypes.addressof(ctypes.c_char.from_buffer(m, offset))


def open_source(images_dir, page_server):
    """The source for `crpy lazy-pages`: the images in images_dir, or (address, port) of a page
    server (not built yet: refused in one line)."""
    if page_server is None:
        return LocalPages(images_dir)
    from crpy.errors import OptionError

    raise OptionError("crpy lazy-pages --page-server: fetching pages from a `crpy page-server` is not "
                      "implemented yet", "copy the images over and run `crpy lazy-pages -D DIR` on them")
