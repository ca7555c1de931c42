"""Where a page's data lives: pagemap entries mapped onto the raw pages-N.img file.

Entries with PE_PRESENT (and not PE_PARENT) have their data in pages-<pages_id>.img, one run
after the other in pagemap order; other entries (lazy, in a parent image) have none here.
"""

from collections import namedtuple

from crpy.errors import ImageError
from crpy.images import framing

PAGE_SIZE = 4096
PE_PARENT = 1 << 0
PE_LAZY = 1 << 1
PE_PRESENT = 1 << 2

# vaddr, nr_pages, flags, and the byte offset in the pages file (None: no data there)
Run = namedtuple("Run", "vaddr nr_pages flags offset")


def is_pages_image(name):
    """Is this file name a pages-N.img (the raw page data, not its pagemap)?"""
    return name.startswith("pages-") and name.endswith(".img")


def has_data(entry):
    flags = entry.flags if entry.HasField("flags") else PE_PRESENT
    return bool(flags & PE_PRESENT) and not (flags & PE_PARENT) and not entry.in_parent


def page_runs(entries):
    """(pages_id, [Run]) of a pagemap image's entries (head first, as read_image returns them)."""
    head, rest = entries[0], entries[1:]
    runs, offset = [], 0
    for e in rest:
        n = framing.pagemap_nr_pages(e)
        if has_data(e):
            runs.append(Run(e.vaddr, n, e.flags, offset))
            offset += n * PAGE_SIZE
        else:
            runs.append(Run(e.vaddr, n, e.flags, None))
    return head.pages_id, runs


def data_size(runs):
    """Bytes of page data the runs need in the pages file."""
    return sum(r.nr_pages * PAGE_SIZE for r in runs if r.offset is not None)


def check_pages_file(pages_path, runs):
    """ImageError if the pages file is shorter than the pagemap says."""
    import os

    need = data_size(runs)
    try:
        have = os.stat(pages_path).st_size
    except FileNotFoundError:
        raise ImageError(pages_path, "pages image is missing", hint="is the dump complete?") from None
    if have < need:
        raise ImageError(pages_path, f"pages image holds {have} bytes, the pagemap needs {need}", have,
                         "the pages image is truncated, or the pagemap points past its end")


def read_range(pages_path, runs, vaddr, length):
    """The saved bytes of [vaddr, vaddr+length); ValueError if a part of it was not saved here."""
    out = bytearray()
    with open(pages_path, "rb") as f:
        end = vaddr + length
        for r in runs:
            r_end = r.vaddr + r.nr_pages * PAGE_SIZE
            if r.offset is None or r_end <= vaddr or r.vaddr >= end:
                continue
            lo, hi = max(vaddr, r.vaddr), min(end, r_end)
            if lo != vaddr + len(out):
                break
            f.seek(r.offset + (lo - r.vaddr))
            out += f.read(hi - lo)
    if len(out) != length:
        raise ValueError(f"[{vaddr:#x}, {vaddr + length:#x}) is not wholly in this pages image")
    return bytes(out)
