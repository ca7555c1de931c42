"""Compressed page images (`crpy dump --compress`): the on-disk layout, the encoder and the decoder.

A compressed pages-N.img holds the same byte stream as a raw one (the page data of the pagemap's
runs, one after the other), cut into blocks of BLOCK_SIZE raw bytes, each compressed on its own:

    header   8 bytes magic b"CRPYPZ1\\n", u32 codec (1: lz4 block), u32 raw block size
    blocks   u32 raw length, u32 stored length (bit 31: stored as is, the codec did not shrink
             it), then the stored bytes; every block but the last holds exactly BLOCK_SIZE raw bytes

The pagemap head that names the file says so in a crpy-only field (pagemap_head.crpy_codec,
field 1000): crit and criu ignore it and still decode the pagemap, but the pages file is then no
longer raw page data.  (criu's own --compress, added after 4.2, stores lz4 blocks with their
sizes in the pagemap; its layout is not this one.)  The codec was chosen by measurement
(bench/compress.py): lz4 blocks of 1 MiB compress a realistic mix (python heap, text, random,
zero pages) to about 0.41 at 0.7 GiB/s and decompress at 3-3.5 GiB/s; zstd level 1 reaches 0.36
but at 0.55 and 2.3 GiB/s.  lz4 is imported only when a compressed image is written or read.

A restore reads a compressed image once, block by block, into an anonymous memory file (memfd)
that every reader of page data (premap, shared memory, memfds, pre-dump chains) then opens by
path like the raw image; the digests of crpy-digests cover the compressed bytes on disk.

    compress_file(path) -> (raw bytes, stored bytes)     raw pages-N.img -> compressed, in place
    raw_path(pages_path, head) -> path                   where the raw bytes of a pages image are
    image_of(path) -> path                               the image a decoded copy stands for
    summary(path) -> {codec, raw_size, pages} or {}      what `crpy show` says of a pages image
    release()                                            drop the decoded copies (end of a restore)
"""

import os
import struct

from crpy.errors import ImageError

MAGIC = b"CRPYPZ1\n"
CODEC_NONE, CODEC_LZ4 = 0, 1
CODEC_NAMES = {CODEC_LZ4: "lz4"}
BLOCK_SIZE = 1 << 20
STORED = 1 << 31                   # stored length flag: the block is kept as is
_HEAD = struct.Struct("<8sII")
_BLOCK = struct.Struct("<II")
_HINT = ("the compressed pages image is damaged (disk, copy), or its pagemap does not belong to it: "
         "dump again")


def _lz4_block(path):
    """lz4.block, imported only now; ImageError naming the image if lz4 is not installed."""
    try:
        import lz4.block
    except ImportError:
        raise ImageError(path, "compressed page images need the lz4 module, which is not installed",
                         hint="pip install lz4 (make deps installs it)") from None
    return lz4.block


def _reuse_block_buffers():
    """Let malloc serve the 1 MiB block buffers from its heap: by default each is a fresh mmap,
    and faulting its pages in costs more than lz4 itself (a decode runs 3x faster here without).
    Still bounded: memory above 8 MiB free at the heap's top goes back to the system."""
    import ctypes

    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 4 * BLOCK_SIZE)
    libc.mallopt(m_trim_threshold, 8 * BLOCK_SIZE)


def codec_of(head):
    """The codec a pagemap head names for its pages image (CODEC_NONE: raw)."""
    return head.crpy_codec if head.HasField("crpy_codec") else CODEC_NONE


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _workers():
    """Threads that compress or decode blocks side by side (lz4 and the file I/O drop the GIL)."""
    return max(1, min(4, os.cpu_count() or 1))


def _batches(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]


def compress_file(path, codec=CODEC_LZ4):
    """Replace the raw pages image at path by its compressed form (a new file renamed over it, so
    a crash leaves either the raw or the whole compressed image); (raw bytes, bytes written).
    Blocks are compressed a batch at a time by a few threads and written in order."""
    if codec != CODEC_LZ4:
        raise ValueError(f"unknown page codec {codec}")
    lz4_block = _lz4_block(path)
    _reuse_block_buffers()
    from concurrent.futures import ThreadPoolExecutor

    from crpy.images.create import create_image

    def pack(offset):
        block = os.pread(src, BLOCK_SIZE, offset)
        packed = lz4_block.compress(block, store_size=False)
        if len(packed) >= len(block):        # random data: keep it as it is
            return _BLOCK.pack(len(block), len(block) | STORED) + block, len(block)
        return _BLOCK.pack(len(block), len(packed)) + packed, len(block)

    tmp = path + ".compressing"
    src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        out = create_image(tmp)
        try:
            head = _HEAD.pack(MAGIC, codec, BLOCK_SIZE)
            _write_all(out, head)
            raw, stored = 0, len(head)
            offsets = list(range(0, os.fstat(src).st_size, BLOCK_SIZE))
            with ThreadPoolExecutor(_workers()) as pool:
                for batch in _batches(offsets, 4 * _workers()):
                    for data, n in pool.map(pack, batch):
                        _write_all(out, data)
                        raw, stored = raw + n, stored + len(data)
        finally:
            os.close(out)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    finally:
        os.close(src)
    os.rename(tmp, path)
    return raw, stored


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def decode_into(path, out_fd):
    """Decompress the compressed pages image at path into out_fd (from offset 0); raw bytes.
    ImageError naming the offset of the first block that is damaged.  The block headers are
    read first (a few hundred bytes per GiB); the blocks are then decoded by a few threads."""
    lz4_block = _lz4_block(path)
    _reuse_block_buffers()
    from concurrent.futures import ThreadPoolExecutor

    src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        blocks, raw = _block_index(path, src)

        def decode(block):
            _decode_block(path, src, out_fd, block, lz4_block)

        with ThreadPoolExecutor(_workers()) as pool:
            for batch in _batches(blocks, 4 * _workers()):
                list(pool.map(decode, batch))     # the first failure in file order is raised
        return raw
    finally:
        os.close(src)


def _block_index(path, src):
    """([(file offset, raw offset, raw length, stored length, stored as is)], raw bytes) of a
    compressed image whose headers all hold together; ImageError at the first that does not."""
    size = os.fstat(src).st_size
    head = os.pread(src, _HEAD.size, 0)
    if len(head) < _HEAD.size or _HEAD.unpack(head)[0] != MAGIC:
        raise ImageError(path, "not a compressed pages image (no crpy page codec header), "
                         "though its pagemap says it is", 0, _HINT)
    _, codec, block_size = _HEAD.unpack(head)
    if codec != CODEC_LZ4 or not 0 < block_size <= 64 << 20:
        raise ImageError(path, f"unknown page codec {codec} (block size {block_size})", 0,
                         "written by a newer crpy?")
    blocks, pos, raw = [], _HEAD.size, 0
    while pos < size:
        hdr = os.pread(src, _BLOCK.size, pos)
        if len(hdr) < _BLOCK.size:
            raise ImageError(path, f"block header cut short ({size - pos} bytes left)", pos, _HINT)
        raw_len, stored_len = _BLOCK.unpack(hdr)
        length = stored_len & ~STORED
        if not 0 < raw_len <= block_size or length > block_size + (block_size >> 6) + 64:
            raise ImageError(path, f"bad block header (raw {raw_len}, stored {length} bytes)", pos, _HINT)
        end = pos + _BLOCK.size + length
        if end > size:
            raise ImageError(path, f"block cut short ({size - pos - _BLOCK.size} of {length} bytes)", pos, _HINT)
        if raw_len != block_size and end != size:
            raise ImageError(path, f"a short block ({raw_len} bytes) before the last one", pos, _HINT)
        blocks.append((pos, raw, raw_len, length, bool(stored_len & STORED)))
        pos, raw = end, raw + raw_len
    return blocks, raw


def _decode_block(path, src, out_fd, block, lz4_block):
    """One block of the index, written to out_fd at its raw offset."""
    pos, raw_at, raw_len, length, as_is = block
    data = os.pread(src, length, pos + _BLOCK.size)
    if not as_is:
        try:
            data = lz4_block.decompress(data, uncompressed_size=raw_len)
        except Exception as e:    # noqa: BLE001 - lz4 raises its own LZ4BlockError
            raise ImageError(path, f"block does not decompress ({e})", pos, _HINT) from None
    if len(data) != raw_len:
        raise ImageError(path, f"block decompresses to {len(data)} bytes, not {raw_len}", pos, _HINT)
    os.pwrite(out_fd, data, raw_at)


# ------------------------------------------------------------------------------ restore side

_decoded = {}          # realpath of a compressed image -> (memfd holding its raw bytes, its path)


def raw_path(pages_path, head):
    """A path to read the raw page data of pages_path from: the image itself, or (compressed)
    an anonymous memory file holding it, decoded once per restore and opened through the
    restoring process's /proc/PID/fd (so the forked restore children open it by path too)."""
    codec = codec_of(head)
    if codec == CODEC_NONE:
        return pages_path
    if codec not in CODEC_NAMES:
        raise ImageError(pages_path, f"compressed with an unknown page codec {codec}", 0,
                         "written by a newer crpy?")
    if not os.path.exists(pages_path):
        return pages_path          # the size check names the missing image
    key = os.path.realpath(pages_path)
    known = _decoded.get(key)
    if known is None:
        fd = os.memfd_create("crpy-pages", os.MFD_CLOEXEC)
        try:
            size = decode_into(pages_path, fd)
        except BaseException:
            os.close(fd)
            raise
        # the path names the process that decoded it: a forked restore child opens the same file
        known = _decoded[key] = (fd, f"/proc/{os.getpid()}/fd/{fd}")
        from crpy.log import log

        log.debug("decoded %s into %s (%d bytes)", pages_path, known[1], size)
    return known[1]


def image_of(path):
    """The compressed image a decoded copy's path (raw_path) stands for; other paths as they are."""
    for key, (_, decoded) in _decoded.items():
        if decoded == path:
            return key
    return path


def summary(path):
    """What `crpy show` says of a compressed pages image ({} for a raw one): codec and raw size."""
    src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(src, _HEAD.size, 0)
        if len(head) < _HEAD.size or _HEAD.unpack(head)[0] != MAGIC:
            return {}
        _, raw = _block_index(path, src)
        codec = _HEAD.unpack(head)[1]
        return {"codec": CODEC_NAMES.get(codec, codec), "raw_size": raw, "pages": raw // 4096}
    finally:
        os.close(src)


def release():
    """Close the decoded copies (the restored tasks hold their pages by now)."""
    while _decoded:
        os.close(_decoded.popitem()[1][0])
