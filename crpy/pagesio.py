"""Page data of a shmem file into the images, as CRIU stores shared memory and memfds:
pages-N.img with the data extents of the file (holes stay out) and pagemap-shmem-ID.img
listing them.  Below both of its users: the dump's page step (crpy.dump.pages, anonymous
shared memory) and the memfd kind (crpy.resources.memfd), so a resource never imports a pipeline.

    write_shmem_object(images_dir, src_fd, shmid, [(lo, hi)], pages_id, huge_page=0) -> bytes
    data_pages(fd, lo, hi) -> [(start, end)]     page-aligned ranges of the file holding data
    open_out(path) -> fd                         a new image file for page data
"""

import os

from crpy.images.pages import PAGE_SIZE, PE_PRESENT


def open_out(path):
    """A new image file for page data (0600, close-on-exec, never through a planted link:
    crpy.images.create)."""
    from crpy.images.create import create_image

    return create_image(path)


def _data_extents(fd, start, end):
    """[(s, e)] data extents of a tmpfs/shmem file within [start, end) (SEEK_DATA/SEEK_HOLE)."""
    out, pos = [], start
    while pos < end:
        try:
            s = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:                     # ENXIO: no data after pos
            break
        if s >= end:
            break
        e = min(os.lseek(fd, s, os.SEEK_HOLE), end)
        out.append((s, e))
        pos = e
    return out


def data_pages(fd, lo, hi):
    """Page-aligned ranges of [lo, hi) of a tmpfs/shmem file that hold data."""
    return [(s & ~(PAGE_SIZE - 1), (e + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) for s, e in _data_extents(fd, lo, hi)]


def write_shmem_object(images_dir, src, shmid, ranges, pages_id, huge_page=0):
    """pagemap-shmem-SHMID.img + pages-PAGES_ID.img: the data of shmem file `src` within
    `ranges` (holes stay out), as CRIU stores shared memory and memfds; bytes written.
    huge_page: src is hugetlbfs (no sendfile, no holes: huge pages of zeros stay out)."""
    from crpy.images import framing
    from crpy.images.pb import pagemap_pb2

    written = 0
    out = open_out(framing.image_path(images_dir, "pages", pages_id))
    entries = [pagemap_pb2.pagemap_head(pages_id=pages_id)]
    try:
        for lo, hi in ranges:
            pieces = _huge_data(src, lo, hi, huge_page, out) if huge_page else data_pages(src, lo, hi)
            for s, e in pieces:
                if not huge_page:
                    _sendfile_all(out, src, s, e - s)
                written += e - s
                entries.append(framing.new_pagemap_entry(s, (e - s) // PAGE_SIZE, PE_PRESENT))
    finally:
        os.close(out)
    framing.write_image(framing.image_path(images_dir, "pagemap_shmem", shmid), "pagemap_shmem", entries)
    return written


def _huge_data(src, lo, hi, step, out):
    """Copy the huge pages of hugetlbfs file `src` within [lo, hi) that hold data to `out`
    (hugetlbfs has no sendfile and reads an absent huge page as zeros): yields each (s, e) done."""
    for s in range(lo, hi, step):
        data = os.pread(src, min(step, hi - s), s)
        if data.count(0) == len(data):
            continue
        data += bytes(min(step, hi - s) - len(data))
        view = memoryview(data)
        while view:
            view = view[os.write(out, view):]
        yield s, s + len(data)


def _sendfile_all(out, src, offset, count):
    done = 0
    while done < count:
        n = os.sendfile(out, src, offset + done, count - done)
        if n == 0:                           # object shorter than the mapping: pad with zeros
            os.write(out, bytes(count - done))
            break
        done += n
    return count
