"""Reading and writing image files in CRIU's framing.

A file is: [u32 header magic] u32 type magic, then entries, each a little-endian u32 size
followed by that many bytes of protobuf; in payload images (pipes-data) each entry is also
followed by the raw bytes it announces.  Files are written with one write() of one buffer and
read with one read(); every defect is an ImageError naming the file, the byte offset and a hint.

    image_path(images_dir, kind, id=None) -> str
    write_image(path, kind, entries)                # pagemap: head first
    read_image(path, kind=None) -> [message]        # pagemap: head first
    write_payload_image(path, kind, [(entry, data)]) / read_payload_image(path, kind=None)
    read_any(path) -> (Kind, header, [message], [payload])  # what `crpy show` needs
    entry_error(path, message, index) -> ImageError at the offset of entry index
"""

import importlib
import os
import struct

from crpy.errors import ImageError
from crpy.images import magic

_U32 = struct.Struct("<I")


class UnknownImageKind(ImageError):
    """A CRIU image of a kind crpy has no schema for (tty-info.img ...)."""

_HINT_TRUNCATED = "the image is cut short: an interrupted dump or a full disk?"
_HINT_CORRUPT = "the image is corrupted, or was written by an incompatible tool"


def image_path(images_dir, kind, id=None):
    """Path of an image: images_dir + CRIU's file name of kind (e.g. core-PID.img)."""
    k = magic.kind(kind)
    if "{id" in k.pattern:
        if id is None:
            raise ValueError(f"image kind {kind} needs an id (pid, files id, pages id ...)")
        return os.path.join(os.fspath(images_dir), k.pattern.format(id=id))
    return os.path.join(os.fspath(images_dir), k.pattern)


def message_class(dotted):
    """The protobuf class named "module.message" in crpy.images.pb (imported on first use)."""
    module, name = dotted.split(".")
    try:
        mod = importlib.import_module(f"crpy.images.pb.{module}")
    except ImportError as e:
        raise ImageError("crpy.images.pb", f"generated protobuf module {module} is missing ({e})",
                         hint="run `make build` (python3 -m tools.build_protos crpy/images/pb)") from None
    return getattr(mod, name)


# ---------------------------------------------------------------------------------------- write

def _prologue(k):
    if k.magic is None:
        raise ValueError(f"{k.name} is a raw image: write its bytes directly")
    if k.header is None:
        return _U32.pack(k.magic)
    return _U32.pack(k.header) + _U32.pack(k.magic)


def _serialize(path, k, index, entry):
    try:
        return entry.SerializeToString()
    except Exception as e:  # EncodeError: a required field is unset
        raise ImageError(path, f"cannot write entry {index} of the {k.name} image: {e}",
                         hint="a crpy bug: the caller left a required field unset") from None


def _write_all(path, chunks):
    data = b"".join(chunks)
    from crpy.images.create import create_image

    fd = create_image(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        raise ImageError(path, f"cannot write image: {os.strerror(e.errno)}",
                         hint="is the images directory writable, and is there space left?") from None
    finally:
        os.close(fd)
    return len(data)


def write_image(path, kind, entries):
    """Write entries (protobuf messages; for pagemap the head first) as an image of kind.

    Returns the number of bytes written."""
    k = magic.kind(kind)
    chunks = [_prologue(k)]
    for i, entry in enumerate(entries):
        body = _serialize(path, k, i, entry)
        chunks += (_U32.pack(len(body)), body)
    return _write_all(path, chunks)


def write_payload_image(path, kind, items):
    """Write (entry, data) pairs of a payload kind (pipes_data): each entry, then its bytes.

    The entry's payload field (e.g. pipe_data_entry.bytes) is set to len(data).  For a kind
    with a head (ghost_file) the first pair is (head, data): data is the whole file in tail
    mode (head.chunks unset, no more pairs), else empty, and chunk pairs follow."""
    k = magic.kind(kind)
    if not k.payload:
        raise ValueError(f"{kind} images carry no payload")
    chunks = [_prologue(k)]
    for i, (entry, data) in enumerate(items):
        if k.head and i == 0:
            tail = k.tail and not getattr(entry, "chunks", False)
            if (data and not tail) or (tail and len(items) > 1):
                raise ValueError(f"{kind}: raw data follows the head only when chunks is unset")
        elif "+" in k.payload:                # several fields: the caller set them
            if payload_length(k, entry) != len(data):
                raise ValueError(f"{kind}: {k.payload} of entry {i} is not the {len(data)} bytes given")
        else:
            setattr(entry, k.payload, len(data))
        body = _serialize(path, k, i, entry)
        chunks += (_U32.pack(len(body)), body, bytes(data))
    return _write_all(path, chunks)


# ----------------------------------------------------------------------------------------- read

def _load(path):
    try:
        with open(path, "rb", buffering=0) as f:
            return f.read()
    except FileNotFoundError:
        raise ImageError(path, "image file is missing",
                         hint="is this the images directory of a complete dump?") from None
    except IsADirectoryError:
        raise ImageError(path, "is a directory, not an image file",
                         hint="give an image file, or use `crpy show DIR` for a directory") from None
    except OSError as e:
        raise ImageError(path, f"cannot read image: {os.strerror(e.errno)}",
                         hint="check the file's permissions") from None


def _u32_at(path, data, off, what):
    if off + 4 > len(data):
        raise ImageError(path, f"truncated {what}: {len(data) - off} of 4 bytes", off, _HINT_TRUNCATED)
    return _U32.unpack_from(data, off)[0]


def _parse_header(path, data, want):
    """Check the magics; returns (Kind, header magic or None, offset of the first entry)."""
    if not data:
        raise ImageError(path, "image file is empty", 0, "the dump was interrupted or the disk was full")
    first = _u32_at(path, data, 0, "magic")
    header, off = None, 0
    if first in (magic.HEADER_COMMON, magic.HEADER_SERVICE):
        header, off = first, 4
    type_magic = _u32_at(path, data, off, "type magic")
    known = magic.kind_by_magic(type_magic)
    if header is None and known is None and type_magic not in magic.OTHER_MAGICS:
        raise ImageError(path, f"bad header magic {first:#010x} (expected {magic.HEADER_COMMON:#010x})",
                         0, "not a CRIU/crpy image (raw pages-N.img have no magic), or corrupted")
    if want is not None and type_magic != want.magic:
        raise ImageError(path, f"wrong type magic {type_magic:#010x}: this is "
                         f"{magic.describe_magic(type_magic)}, not a {want.name} image", off,
                         "was the file renamed, or a different file given?")
    k = want or known
    if k is None and type_magic not in magic.OTHER_MAGICS:
        raise ImageError(path, f"unknown type magic {type_magic:#010x}", off, _HINT_CORRUPT)
    if k is None:
        raise UnknownImageKind(path, f"type magic {type_magic:#010x} is {magic.describe_magic(type_magic)}",
                               off, "crpy cannot decode this kind of image yet")
    if header != k.header:
        expected = "no header magic" if k.header is None else f"header magic {k.header:#010x}"
        found = f"{header:#010x}" if header is not None else "none"
        raise ImageError(path, f"bad header magic {found} for a {k.name} image ({expected})", 0,
                         _HINT_CORRUPT)
    return k, header, off + 4


def _parse_entries(path, data, off, k):
    """(messages, payloads or None) of the entries from off to the end of data."""
    if k.payload:
        return _parse_with_payload(path, data, off, k)
    spans = _frame_spans(path, data, off)
    classes = [message_class(k.entry)] * len(spans)
    if k.head and spans:
        classes[0] = message_class(k.head)
    try:  # fast path: one comprehension; on any defect, find and name the bad entry
        messages = [cls.FromString(data[a:b]) for cls, (a, b) in zip(classes, spans)]
        if all(m.IsInitialized() for m in messages):
            return messages, None
    except Exception:
        pass
    return [_decode(path, cls, data[a:b], i, a) for i, (cls, (a, b)) in enumerate(zip(classes, spans))], None


def _frame_spans(path, data, off):
    """[(start, end)] of every entry's protobuf bytes; ImageError on a cut-short frame."""
    spans, end, unpack = [], len(data), _U32.unpack_from
    while off < end:
        if off + 4 > end:
            _u32_at(path, data, off, f"size of entry {len(spans)}")  # raises with the details
        start = off + 4
        stop = start + unpack(data, off)[0]
        if stop > end:
            raise ImageError(path, f"entry {len(spans)} needs {stop - start} bytes, only {end - start} left",
                             start, _HINT_TRUNCATED)
        spans.append((start, stop))
        off = stop
    return spans


def payload_length(k, msg):
    """Bytes following entry msg of payload kind k (the sum of the fields k.payload names)."""
    return sum(getattr(msg, name) for name in k.payload.split("+"))


def _parse_with_payload(path, data, off, k):
    """Entries each followed by raw bytes whose length the entry's payload field gives.

    A head (ghost files) carries no payload, except in tail mode, where all the rest is its."""
    cls, messages, payloads, index = message_class(k.entry), [], [], 0
    while off < len(data):
        size = _u32_at(path, data, off, f"size of entry {index}")
        start = off + 4
        if start + size > len(data):
            raise ImageError(path, f"entry {index} needs {size} bytes, only {len(data) - start} left",
                             start, _HINT_TRUNCATED)
        is_head = bool(k.head) and index == 0
        msg = _decode(path, message_class(k.head) if is_head else cls, data[start:start + size], index, start)
        off = start + size
        messages.append(msg)
        index += 1
        if is_head:
            if k.tail and not getattr(msg, "chunks", False):
                payloads.append(data[off:])
                break
            payloads.append(b"")
            continue
        length = payload_length(k, msg)
        if off + length > len(data):
            raise ImageError(path, f"payload of entry {index - 1} needs {length} bytes, only "
                             f"{len(data) - off} left", off, _HINT_TRUNCATED)
        payloads.append(data[off:off + length])
        off += length
    return messages, payloads


def _decode(path, cls, body, index, off):
    msg = cls()
    try:
        msg.ParseFromString(body)
    except Exception as e:  # DecodeError
        raise ImageError(path, f"entry {index} is not a valid {cls.DESCRIPTOR.name}: {e}", off,
                         _HINT_CORRUPT) from None
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise ImageError(path, f"entry {index} ({cls.DESCRIPTOR.name}) lacks required fields: {missing}",
                         off, _HINT_CORRUPT)
    return msg


def _check_version(path, k, messages, end):
    if k.name != "inventory":
        return
    if not messages:
        raise ImageError(path, "inventory has no entry", end, _HINT_TRUNCATED)
    version = messages[0].img_version
    if version != magic.IMG_VERSION:
        raise ImageError(path, f"unsupported image version {version} (crpy reads version "
                         f"{magic.IMG_VERSION}, as CRIU 4.x writes)", 8,
                         "dump again with this crpy, or with CRIU 4.x")


def read_bytes(path):
    """The whole file of an image (ImageError if it cannot be read), for read_any(data=...)."""
    return _load(path)


def read_any(path, kind=None, data=None):
    """Read an image (or decode `data`, its bytes already read); returns (Kind, header magic or
    None, messages, payloads or None)."""
    want = magic.kind(kind) if kind is not None else None
    if want is not None and want.magic is None:
        raise ValueError(f"{kind} is a raw image, not a framed one")
    if data is None:
        data = _load(path)
    k, header, off = _parse_header(path, data, want)
    messages, payloads = _parse_entries(path, data, off, k)
    _check_version(path, k, messages, len(data))
    return k, header, messages, payloads


def entry_offset(path, index):
    """Byte offset of entry index's protobuf bytes in a framed image (no payload kinds), or None."""
    try:
        data = _load(path)
        k, _, off = _parse_header(path, data, None)
        if k.payload:
            return None
        return _frame_spans(path, data, off)[index][0]
    except (ImageError, IndexError):
        return None


def entry_error(path, message, index=0, hint=_HINT_CORRUPT):
    """ImageError about what entry index of a framed image holds, at that entry's offset (at the
    end of the file when there is no such entry: where it should have been)."""
    offset = entry_offset(path, index)
    return ImageError(path, message, _file_size(path) if offset is None else offset, hint)


def _file_size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def read_image(path, kind=None, data=None):
    """Every entry of an image (for pagemap the head first); kind=None accepts any known kind."""
    return read_any(path, kind, data)[2]


def read_payload_image(path, kind=None):
    """[(entry, payload bytes)] of a payload image such as pipes-data.img."""
    k, _, messages, payloads = read_any(path, kind)
    if payloads is None:
        raise ValueError(f"{k.name} images carry no payload")
    return list(zip(messages, payloads))


def read_one(path, kind, data=None):
    """The single entry of a one-entry image (inventory, mm, fs, ids ...)."""
    entries = read_image(path, kind, data)
    if len(entries) != 1:     # the offset of the second entry, or of the end where the first should be
        offset = entry_offset(path, 1) if entries else _file_size(path)
        raise ImageError(path, f"expected exactly one entry, found {len(entries)}", offset, _HINT_CORRUPT)
    return entries[0]


def pagemap_nr_pages(entry):
    """Page count of a pagemap_entry: the 64-bit field of 4.x, else the old 32-bit one."""
    return entry.nr_pages if entry.HasField("nr_pages") else entry.compat_nr_pages


def new_pagemap_entry(vaddr, nr_pages, flags):
    """A pagemap_entry as CRIU 4.x writes it, readable by older decoders where the count fits."""
    cls = message_class("pagemap_pb2.pagemap_entry")
    compat = nr_pages if nr_pages < (1 << 32) else 0
    return cls(vaddr=vaddr, compat_nr_pages=compat, nr_pages=nr_pages, flags=flags)
