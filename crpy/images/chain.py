"""Images directories chained by pre-dumps: DIR/parent is a symlink to the previous round's
directory (as criu's), and a pagemap entry with PE_PARENT there has its data in that directory
(or further up the chain) at the same address of the same pid.

resolve() turns a run into the (vaddr, length, pages path, offset) pieces that hold its bytes;
coverage() is what a chain holds data for, so a new round refers to it only for pages it has.
"""

import bisect
import functools
import os

from crpy.errors import ImageError
from crpy.images import framing, pagecodec
from crpy.images.pages import PAGE_SIZE, PE_PARENT, PE_PRESENT

PARENT_LINK = "parent"
MAX_DEPTH = 64                  # a symlink loop is an error, not a hang


def parent_dir(images_dir):
    """The previous round's directory, or None."""
    link = os.path.join(images_dir, PARENT_LINK)
    if not os.path.islink(link) and not os.path.isdir(link):
        return None
    return os.path.realpath(link)


def chain_dirs(images_dir):
    """images_dir and every ancestor, nearest first."""
    out, d = [], os.path.realpath(images_dir)
    while d is not None:
        if len(out) == MAX_DEPTH:
            raise ImageError(images_dir, f"a chain of more than {MAX_DEPTH} parent directories",
                             hint="a parent symlink loop?")
        out.append(d)
        d = parent_dir(d)
    return out


def _flags(e):
    if e.HasField("flags"):
        return e.flags
    return PE_PARENT if e.in_parent else PE_PRESENT


def task_runs(images_dir, pid):
    """[(vaddr, end, flags, pages path, offset)] of pid's pagemap in images_dir, in address
    order; [] if none.  Read once per directory and pid (a restore asks for every run)."""
    return _task_runs(os.path.realpath(images_dir), pid)


@functools.lru_cache(maxsize=256)
def _task_runs(images_dir, pid):
    mpath = framing.image_path(images_dir, "pagemap", pid)
    if not os.path.exists(mpath):
        return []
    entries = framing.read_image(mpath, "pagemap")
    if not entries:
        raise ImageError(mpath, "no pagemap head")
    ppath = framing.image_path(images_dir, "pages", entries[0].pages_id)
    ppath = pagecodec.raw_path(ppath, entries[0])    # compressed (--compress): its decoded copy
    out, offset = [], 0
    for e in entries[1:]:                      # data offsets follow the entries' file order
        length = framing.pagemap_nr_pages(e) * PAGE_SIZE
        flags = _flags(e)
        has_data = flags & PE_PRESENT and not flags & PE_PARENT
        out.append((e.vaddr, e.vaddr + length, flags, ppath if has_data else None, offset if has_data else None))
        if has_data:
            offset += length
    return sorted(out)


def resolve(images_dir, pid, vaddr, length, depth=0):
    """[(vaddr, length, pages path, offset)] holding [vaddr, vaddr+length) of pid, found in the
    parent chain of images_dir; ImageError for a page no ancestor holds."""
    parent = parent_dir(images_dir)
    where = f"pid {pid} page range {vaddr:#x}+{length:#x}"
    if parent is None or depth >= MAX_DEPTH:
        raise ImageError(images_dir, f"{where} is marked in the parent images, but there is no parent "
                         "directory", hint="the 'parent' symlink of a pre-dump chain is missing")
    out, end = [], vaddr + length
    runs = task_runs(parent, pid)
    first = max(bisect.bisect_right(runs, (vaddr,)) - 1, 0)
    for s, e, flags, ppath, offset in runs[first:]:
        if s >= end:
            break
        lo, hi = max(s, vaddr), min(e, end)
        if lo >= hi:
            continue
        if ppath is not None:
            out.append((lo, hi - lo, ppath, offset + lo - s))
        elif flags & PE_PARENT:
            out += resolve(parent, pid, lo, hi - lo, depth + 1)
    if sum(n for _, n, _, _ in out) != length:
        raise ImageError(parent, f"{where} is not in the parent images", hint="the pre-dump chain is incomplete")
    return sorted(out)


def coverage(images_dir, pid):
    """Sorted merged [(start, end)] of pid's pages whose data images_dir's chain holds."""
    spans = sorted((s, e) for s, e, flags, ppath, _ in task_runs(images_dir, pid)
                   if ppath is not None or flags & PE_PARENT)
    out = []
    for s, e in spans:
        if out and out[-1][1] >= s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
