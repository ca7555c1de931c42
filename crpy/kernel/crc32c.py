"""CRC-32C (crpy-digests' chunk digest) in C: the same code the parasite runs as it splices
pages (parasite/crc32c.h), through the cffi module, with the GIL released.

    crc32c(buf, crc=0) -> int               buf: any buffer; crc: of the bytes before it
    file_chunks(fd, start, end, chunk)      [crc32c of each chunk of bytes [start, end) of fd]
    files_chunks(dirfd, files, chunk)       the same of many whole files in one call
    fast()                                  True if the CPU has SSE4.2's crc32 instruction
    combine(crc_a, crc_b, len_b)            crc32c of A then B, from their digests
    pread_crc(fd, iovs, offset, chunk, populate=False, hashed=True)
                                            read into [(address, length)], [crc32c of each part]
"""

import os

def crc32c(buf, crc=0):
    from crpy.kernel._sys import ffi, lib

    view = memoryview(buf)
    return lib.crpy_crc32c(crc, ffi.from_buffer(view), view.nbytes)


def file_chunks(fd, start, end, chunk):
    from crpy.kernel._sys import ffi, lib

    if end <= start:
        return []
    out = ffi.new("uint64_t[]", -(-(end - start) // chunk))
    n = lib.crpy_crc32c_file(fd, start, end, chunk, out)
    if n < 0:
        raise OSError(-n, os.strerror(-n))
    return list(out[0:n])


def files_chunks(dirfd, files, chunk):
    """files: [(name under dirfd, size the dump recorded)] -> [(size, [crc32c of each chunk])],
    each file hashed whole in one C call for all (the GIL released); (size, None) for a file whose
    size is not the recorded one, (-errno, None) for one that cannot be read."""
    from crpy.kernel._sys import ffi, lib

    names = [ffi.new("char[]", os.fsencode(name)) for name, _ in files]
    first, total = [], 0
    for _, size in files:
        first.append(total)
        total += -(-size // chunk)
    sizes = ffi.new("int64_t[]", [size for _, size in files])
    out = ffi.new("uint64_t[]", max(total, 1))
    lib.crpy_crc32c_files(dirfd, ffi.new("char *[]", names), len(files), chunk, sizes, first, out)
    return [(sizes[i], list(out[first[i]:first[i] + -(-size // chunk)]) if sizes[i] == size else None)
            for i, (_, size) in enumerate(files)]


def fast():
    from crpy.kernel._sys import lib

    return bool(lib.crpy_crc32c_sse42())


def combine(crc_a, crc_b, len_b):
    """crc32c of bytes A followed by bytes B, from crc32c(A), crc32c(B) and len(B)."""
    from crpy.kernel._sys import lib

    return lib.crpy_crc32c_combine(crc_a, crc_b, len_b)


def pread_crc(fd, iovs, offset, chunk, populate=False, hashed=True):
    """Read bytes [offset, ...) of fd into the buffers iovs [(address, length)] in order, a piece
    of at most one chunk at a time, each populated first if `populate` (anonymous memory the read
    overwrites whole) and hashed right after its read if `hashed`: [crc32c of each part of the
    read], the parts cut at the multiples of chunk in the file (None if not hashed).  OSError if
    the read fails or the file ends first (EIO)."""
    from crpy.kernel._sys import ffi, lib

    total = sum(n for _, n in iovs)
    first = offset // chunk
    out = ffi.NULL
    if hashed:
        out = ffi.new("uint32_t[]", (offset + total - 1) // chunk - first + 1 if total else 1)
    got = lib.crpy_read_pieces(fd, [a for a, _ in iovs], [n for _, n in iovs], len(iovs), offset, chunk, out,
                               int(populate))
    if got < 0:
        raise OSError(-got, os.strerror(-got))
    return list(out[0:got]) if hashed else None
