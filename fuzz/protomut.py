"""A structure-aware mutator of CRIU-framed images, for atheris' custom_mutator.

An image is decoded as its framing (optional header magic, type magic, then u32 size + protobuf
entry, plus raw payload bytes in payload kinds), each entry as protobuf wire-format fields
(recursively, where a length-delimited field parses as a message), one thing is changed at the
field level -- a varint set to an extreme or flipped, a field truncated, duplicated, dropped or
given another wire type, a length made wrong -- and the image is framed again.  Frame-level
mutations (entries dropped, duplicated, swapped, sizes lied about, magics changed, the file cut)
are mixed in.  It needs no schema: it works on the wire format, as a protobuf-aware mutator would.
"""

import random
import struct

_U32 = struct.Struct("<I")
EXTREMES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFF, 0x1000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32,
            (1 << 47) - 4096, 1 << 47, 0x7FFFFFFFFFFFFFFF, 1 << 63, (1 << 64) - 1)
HEADER_MAGICS = (0x54564319, 0x55105940)
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5


# ----------------------------------------------------------------------------- protobuf wire

def encode_varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varint(data, off):
    value, shift = 0, 0
    while True:
        if off >= len(data) or shift > 63:
            raise ValueError("bad varint")
        b = data[off]
        off += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, off


def parse_fields(data):
    """[(field number, wire type, value)]: value an int (varints, fixed) or bytes (LEN);
    ValueError when data is not wire format."""
    fields, off = [], 0
    while off < len(data):
        key, off = _varint(data, off)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field 0")
        if wire == VARINT:
            value, off = _varint(data, off)
        elif wire == FIXED64:
            if off + 8 > len(data):
                raise ValueError("cut fixed64")
            value, off = int.from_bytes(data[off:off + 8], "little"), off + 8
        elif wire == FIXED32:
            if off + 4 > len(data):
                raise ValueError("cut fixed32")
            value, off = int.from_bytes(data[off:off + 4], "little"), off + 4
        elif wire == LEN:
            size, off = _varint(data, off)
            if off + size > len(data):
                raise ValueError("cut bytes")
            value, off = bytes(data[off:off + size]), off + size
        else:
            raise ValueError(f"wire type {wire}")
        fields.append((number, wire, value))
    return fields


def encode_fields(fields):
    out = bytearray()
    for number, wire, value in fields:
        out += encode_varint(number << 3 | wire)
        if wire == VARINT:
            out += encode_varint(value)
        elif wire == FIXED64:
            out += (value & (1 << 64) - 1).to_bytes(8, "little")
        elif wire == FIXED32:
            out += (value & 0xFFFFFFFF).to_bytes(4, "little")
        else:
            out += encode_varint(len(value)) + value
    return bytes(out)


def _mutate_int(rng, value, bits):
    choice = rng.randrange(5)
    if choice == 0:
        value = rng.choice(EXTREMES)
    elif choice == 1:
        value ^= 1 << rng.randrange(bits)
    elif choice == 2:
        value += rng.choice((-4096, -1, 1, 4096))
    elif choice == 3:
        value = rng.getrandbits(bits)
    else:
        value = -rng.choice((1, 2, 4096, 1 << 31))      # negative int32/int64: 10-byte varints
    return value & ((1 << bits) - 1)


def _mutate_bytes(rng, value):
    choice = rng.randrange(6)
    if choice == 0 and value:
        return value[:rng.randrange(len(value))]
    if choice == 1:
        return value + value
    if choice == 2 and value:
        i = rng.randrange(len(value))
        return value[:i] + bytes([rng.randrange(256)]) + value[i + 1:]
    if choice == 3:
        return rng.choice((b"", b"\x00", b"\xff\xfe", b"/" * 300, b"a\x00b", b"\xc3", b"../../etc/passwd"))
    if choice == 4:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
    return value * rng.randrange(2, 50)


def mutate_message(rng, data, depth=0):
    """data (one protobuf message) with one field-level change; bytes mutated if it does not parse."""
    try:
        fields = parse_fields(data)
    except ValueError:
        return _mutate_bytes(rng, data)
    if not fields:
        return encode_fields([(rng.randrange(1, 40), VARINT, rng.choice(EXTREMES))])
    i = rng.randrange(len(fields))
    number, wire, value = fields[i]
    op = rng.randrange(10)
    if op == 0:
        del fields[i]
    elif op == 1:
        fields.insert(i, fields[i])
    elif op == 2:                                 # the same number with another wire type
        fields[i] = (number, rng.choice((VARINT, FIXED32, FIXED64, LEN)), b"\x01" if rng.random() < .5 else 7)
        n, w, v = fields[i]
        fields[i] = (n, w, v if (w == LEN) == isinstance(v, bytes) else (b"\x01\x02" if w == LEN else 1))
    elif op == 3:                                 # a field the schema may not have
        fields.insert(i, (rng.choice((rng.randrange(1, 40), rng.randrange(1000, 1010), 536870911)),
                          VARINT, rng.choice(EXTREMES)))
    elif op == 4 and len(fields) > 1:
        j = rng.randrange(len(fields))
        fields[i], fields[j] = fields[j], fields[i]
    elif op == 5 and wire == LEN:                 # a length that lies: raw bytes, no re-encoding
        raw = encode_fields(fields[:i])
        lie = max(0, len(value) + rng.choice((-2, -1, 1, 2, 1000, 1 << 31)))
        tail = encode_fields(fields[i + 1:])
        return raw + encode_varint(number << 3 | LEN) + encode_varint(lie) + value + tail
    elif wire == LEN:
        sub = mutate_message(rng, value, depth + 1) if depth < 6 and rng.random() < .7 else _mutate_bytes(rng, value)
        fields[i] = (number, wire, sub)
    else:
        fields[i] = (number, wire, _mutate_int(rng, value, 32 if wire == FIXED32 else 64))
    return encode_fields(fields)


# ----------------------------------------------------------------------------------- framing

def split_frames(data, payload_len=None):
    """(prologue, [(entry, payload)]), or None when data is not framed as expected.
    payload_len(entry bytes, index) gives the raw bytes after an entry (payload kinds)."""
    if len(data) < 4:
        return None
    off = 8 if _U32.unpack_from(data, 0)[0] in HEADER_MAGICS else 4
    if off > len(data):
        return None
    prologue, frames = data[:off], []
    while off < len(data):
        if off + 4 > len(data):
            return None
        size = _U32.unpack_from(data, off)[0]
        start = off + 4
        if start + size > len(data):
            return None
        entry = data[start:start + size]
        off = start + size
        extra = payload_len(entry, len(frames)) if payload_len else 0
        if extra is None:
            extra = len(data) - off
        payload = data[off:off + extra]
        off += extra
        frames.append((entry, payload))
    return prologue, frames


def join_frames(prologue, frames):
    out = bytearray(prologue)
    for entry, payload in frames:
        out += _U32.pack(len(entry)) + entry + payload
    return bytes(out)


def mutate_image(rng, data, payload_len=None):
    """data (a framed image) with one structure-aware change; a byte-level one if it is not framed."""
    split = split_frames(data, payload_len)
    if split is None or rng.random() < 0.05:
        return _mutate_bytes(rng, data)
    prologue, frames = split
    op = rng.randrange(12)
    if not frames or op == 0:
        frames.append((mutate_message(rng, frames[-1][0] if frames else b""), b""))
    elif op == 1:
        del frames[rng.randrange(len(frames))]
    elif op == 2:
        i = rng.randrange(len(frames))
        frames.insert(i, frames[i])
    elif op == 3:
        i, j = rng.randrange(len(frames)), rng.randrange(len(frames))
        frames[i], frames[j] = frames[j], frames[i]
    elif op == 4:                                 # a frame size that lies
        whole = join_frames(prologue, frames)
        pos = len(prologue)
        for entry, payload in frames[:rng.randrange(len(frames))]:
            pos += 4 + len(entry) + len(payload)
        lie = _mutate_int(rng, _U32.unpack_from(whole, pos)[0], 32)
        return whole[:pos] + _U32.pack(lie) + whole[pos + 4:]
    elif op == 5:                                 # a magic changed
        pos = 4 * rng.randrange(len(prologue) // 4)
        return prologue[:pos] + _U32.pack(_mutate_int(rng, _U32.unpack_from(prologue, pos)[0], 32)) + \
            join_frames(prologue, frames)[pos + 4:]
    elif op == 6:                                 # the file cut short
        whole = join_frames(prologue, frames)
        return whole[:rng.randrange(len(whole) + 1)]
    elif op == 7 and any(p for _, p in frames):   # a payload changed
        i = rng.choice([n for n, (_, p) in enumerate(frames) if p])
        frames[i] = (frames[i][0], _mutate_bytes(rng, frames[i][1]))
    else:
        i = rng.randrange(len(frames))
        for _ in range(1 + (rng.random() < .3) * rng.randrange(1, 4)):
            frames[i] = (mutate_message(rng, frames[i][0]), frames[i][1])
    return join_frames(prologue, frames)


def custom_mutator(payload_len=None, byte_mutate=None):
    """An atheris custom_mutator: half structure-aware (above), half atheris' own byte-level
    mutation (byte_mutate = atheris.Mutate), so coverage feedback drives both."""
    def mutator(data, max_size, seed):
        rng = random.Random(seed)
        if byte_mutate is not None and rng.random() < 0.4:
            return byte_mutate(data, max_size)
        out = mutate_image(rng, bytes(data), payload_len)
        return out[:max_size]
    return mutator
