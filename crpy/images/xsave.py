"""Raw XSAVE state <-> CRIU's user_x86_fpregs_entry.

The raw form is the standard (non-compacted) XSAVE layout that PTRACE_GETREGSET NT_X86_XSTATE
returns and a signal frame holds:
  bytes   0..159  x87 legacy state (cwd swd twd fop rip rdp mxcsr mxcsr_mask, st0-7)
  bytes 160..415  xmm0-15
  bytes 416..511  not CPU state: 416..463 unused, 464..511 "sw_reserved", where ptrace puts
                  XCR0 and a signal frame puts its _fpx_sw_bytes.  Not kept in the image (CRIU
                  4.x leaves `padding` empty too); to_raw() writes zeros there, and whoever
                  builds a signal frame must write the frame's sw bytes.
  bytes 512..575  XSAVE header: xstate_bv, xcomp_bv (0 = standard format), reserved zeros
  then component i >= 2 at the offset CPUID 0xD.i gives (crpy.kernel.cpuid.xsave_layout()).
Every component enabled in the layout is stored whole (even when its xstate_bv bit says it is
in its init state), so from_raw() then to_raw() gives back the same bytes, except 416..511,
and except holes between components, which to_raw() leaves zero (as the kernel does).
CET state (xsave.cet) is not part of this layout (the kernel gives it through its own regset):
from_raw() leaves it unset and to_raw() ignores it.
"""

import struct

# component number -> (field of user_x86_xsave_entry, bytes per word)
COMPONENT_FIELDS = {
    2: ("ymmh_space", 4),
    3: ("bndreg_state", 8),
    4: ("bndcsr_state", 8),
    5: ("opmask_reg", 8),
    6: ("zmm_upper", 8),
    7: ("hi16_zmm", 8),
    9: ("pkru", 4),
}

LEGACY_SIZE = 512
HEADER_SIZE = 64
_LEGACY = struct.Struct("<HHHHQQII")   # cwd swd twd fop rip rdp mxcsr mxcsr_mask (32 bytes)
_HEADER = struct.Struct("<QQ")         # xstate_bv xcomp_bv


class XsaveError(ValueError):
    """The XSAVE state cannot be converted (compacted format, unknown component, other CPU)."""


def _default_layout():
    from crpy.kernel import cpuid

    return cpuid.xsave_layout()


def _words(raw, offset, size, width):
    fmt = "<%d%s" % (size // width, "I" if width == 4 else "Q")
    return struct.unpack_from(fmt, raw, offset)


def from_raw(raw, layout=None):
    """user_x86_fpregs_entry (with its xsave sub-message) from raw XSAVE bytes."""
    from crpy.images.pb import core_x86_pb2

    layout = _default_layout() if layout is None else layout
    raw = bytes(raw)
    if len(raw) < LEGACY_SIZE + HEADER_SIZE:
        raise XsaveError(f"XSAVE area of {len(raw)} bytes is shorter than legacy area + header")
    cwd, swd, twd, fop, rip, rdp, mxcsr, mxcsr_mask = _LEGACY.unpack_from(raw, 0)
    fp = core_x86_pb2.user_x86_fpregs_entry(
        cwd=cwd, swd=swd, twd=twd, fop=fop, rip=rip, rdp=rdp, mxcsr=mxcsr, mxcsr_mask=mxcsr_mask,
        st_space=_words(raw, 32, 128, 4), xmm_space=_words(raw, 160, 256, 4))
    xstate_bv, xcomp_bv = _HEADER.unpack_from(raw, LEGACY_SIZE)
    if xcomp_bv:
        raise XsaveError(f"compacted XSAVE format (xcomp_bv {xcomp_bv:#x}) is not supported")
    xs = fp.xsave
    xs.xstate_bv = xstate_bv
    for comp, (offset, size) in sorted(layout.items()):
        if comp < 2:
            continue
        if comp not in COMPONENT_FIELDS:
            raise XsaveError(f"XSAVE component {comp} is enabled but crpy cannot store it yet")
        if offset + size > len(raw):
            raise XsaveError(f"XSAVE area of {len(raw)} bytes ends inside component {comp}")
        field, width = COMPONENT_FIELDS[comp]
        getattr(xs, field).extend(_words(raw, offset, size, width))
    return fp


def to_raw(fp, layout=None, size=None, drop_unsupported=False):
    """Raw standard-format XSAVE bytes from a user_x86_fpregs_entry, for this CPU's layout.

    size defaults to the end of the last component.  A component this layout lacks is
    dropped if it holds only zeros (its init state); otherwise XsaveError: the task used a
    CPU feature this machine does not have -- unless drop_unsupported, which puts such
    components in their init state (like `criu restore --cpu-cap=none`; see unsupported())."""
    layout = _default_layout() if layout is None else layout
    end = max(off + sz for off, sz in layout.values())
    size = max(end, LEGACY_SIZE + HEADER_SIZE) if size is None else size
    buf = bytearray(size)
    _LEGACY.pack_into(buf, 0, fp.cwd, fp.swd, fp.twd, fp.fop, fp.rip, fp.rdp, fp.mxcsr, fp.mxcsr_mask)
    _pack_words(buf, 32, fp.st_space, 4, 128, "st_space")
    _pack_words(buf, 160, fp.xmm_space, 4, 256, "xmm_space")
    xstate_bv = fp.xsave.xstate_bv if fp.HasField("xsave") else 0b11
    mask = sum(1 << c for c in layout)
    for comp, (field, width) in COMPONENT_FIELDS.items():
        words = getattr(fp.xsave, field) if fp.HasField("xsave") else ()
        if not words:
            continue
        if comp not in layout:
            if xstate_bv & (1 << comp) and any(words) and not drop_unsupported:
                raise XsaveError(f"the image holds XSAVE component {comp} ({field}) in use, "
                                 "but this CPU does not enable it")
            continue
        offset, comp_size = layout[comp]
        _pack_words(buf, offset, words, width, comp_size, field)
    _HEADER.pack_into(buf, LEGACY_SIZE, xstate_bv & mask, 0)
    return bytes(buf)


def unsupported(fp, layout=None):
    """Components the entry holds in use that the layout (this CPU) lacks, as field names."""
    layout = _default_layout() if layout is None else layout
    if not fp.HasField("xsave"):
        return []
    return [field for comp, (field, _) in sorted(COMPONENT_FIELDS.items())
            if comp not in layout and fp.xsave.xstate_bv & (1 << comp) and any(getattr(fp.xsave, field))]


def _pack_words(buf, offset, words, width, size, name):
    if len(words) * width != size:
        raise XsaveError(f"{name} holds {len(words) * width} bytes, the component has {size}")
    fmt = "<%d%s" % (len(words), "I" if width == 4 else "Q")
    struct.pack_into(fmt, buf, offset, *words)
