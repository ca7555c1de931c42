"""CRC-32C (crpy-digests' chunk digest) in C: the same code the parasite runs as it splices
pages (parasite/crc32c.h), through the cffi module, with the GIL released.

    crc32c(buf, crc=0) -> int               buf: any buffer; crc: of the bytes before it
    file_chunks(fd, start, end, chunk)      [crc32c of each chunk of bytes [start, end) of fd]
    fast()                                  True if the CPU has SSE4.2's crc32 instruction
"""

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
        import os

        raise OSError(-n, os.strerror(-n))
    return list(out[0:n])


def fast():
    from crpy.kernel._sys import lib

    return bool(lib.crpy_crc32c_sse42())
