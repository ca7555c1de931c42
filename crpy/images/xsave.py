"""Raw XSAVE state <-> CRIU's user_x86_fpregs_entry, for a layout given as data.

The raw form is the standard (non-compacted) XSAVE layout that PTRACE_GETREGSET NT_X86_XSTATE
returns and a signal frame holds:
  bytes   0..159  x87 legacy state (cwd swd twd fop rip rdp mxcsr mxcsr_mask, st0-7)
  bytes 160..415  xmm0-15
  bytes 416..511  not CPU state: 416..463 unused, 464..511 "sw_reserved", where ptrace puts
                  XCR0 and a signal frame puts its _fpx_sw_bytes.  Not kept in the image (CRIU
                  4.x leaves `padding` empty too); to_raw() writes zeros there, and whoever
                  builds a signal frame must write the frame's sw bytes.
  bytes 512..575  XSAVE header: xstate_bv, xcomp_bv (0 = standard format), reserved zeros
  then component i >= 2 at an offset the CPU enumerates (CPUID 0xD.i).
A layout is {component number: (offset, size)}: the dump passes the dumping CPU's (and records
it in cpuinfo.img), a restore the running CPU's; this module never asks a CPU.  Offsets differ
between CPUs (Intel puts the AVX-512 opmask at 1088 and PKRU at 2688; an AMD EPYC of family 25
puts the opmask at 832, others PKRU at 2432), so a raw area is only ever read or written with the layout it was or will be used in.
Every component of COMPONENT_FIELDS enabled in the layout is stored whole (even when its
xstate_bv bit says it is in its init state), so from_raw() then to_raw() gives back the same
bytes, except 416..511, and except holes between components, which to_raw() leaves zero (as
the kernel does).  Components the image format has no field for (AMX tiles, APX) are left out
when in their init state and refused when in use: stored_layout() is what an image can hold.
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

# what a user calls each XSAVE component (several components make one feature)
FEATURE_NAMES = {0: "x87", 1: "sse", 2: "avx", 3: "mpx", 4: "mpx", 5: "avx512", 6: "avx512",
                 7: "avx512", 8: "pt", 9: "pkru", 10: "pasid", 11: "cet", 12: "cet", 17: "amx",
                 18: "amx", 19: "apx"}
LEGACY_LAYOUT = {0: (0, 160), 1: (160, 256)}
# The standard-format offsets of the user components on Intel CPUs.  Only for images that do not
# record their layout (CRIU's cpuinfo.img has no offsets): other CPUs use other offsets.
STANDARD_LAYOUT = {**LEGACY_LAYOUT, 2: (576, 256), 3: (960, 64), 4: (1024, 64), 5: (1088, 64),
                   6: (1152, 512), 7: (1664, 1024), 9: (2688, 8)}
# AMX tile data: the kernel gives a task room for it (in its own buffer and in its signal frames)
# only once the task asked (arch_prctl ARCH_REQ_XCOMP_PERM) and used it; a signal frame holding
# it is too big for any other task, and rt_sigreturn then restores x87 and SSE alone, silently.
DYNAMIC_COMPONENTS = frozenset({18})
DYNAMIC_MASK = sum(1 << comp for comp in DYNAMIC_COMPONENTS)
LEGACY_SIZE = 512
HEADER_SIZE = 64
_LEGACY = struct.Struct("<HHHHQQII")   # cwd swd twd fop rip rdp mxcsr mxcsr_mask (32 bytes)
_HEADER = struct.Struct("<QQ")         # xstate_bv xcomp_bv


class XsaveError(ValueError):
    """The XSAVE state cannot be converted (compacted format, unknown component, other CPU)."""


def feature_names(mask):
    """The feature names of the components in mask, once each, in component order."""
    names = []
    for comp in range(64):
        name = FEATURE_NAMES.get(comp, f"xfeature{comp}")
        if mask >> comp & 1 and name not in names:
            names.append(name)
    return names


def layout_mask(layout):
    """The xfeatures mask (XCR0-style) of a layout."""
    return sum(1 << comp for comp in layout)


def layout_size(layout):
    """The size of the standard-format area for a layout (at least legacy area + header)."""
    return max([LEGACY_SIZE + HEADER_SIZE] + [off + size for off, size in layout.values()])


def stored_layout(layout):
    """The components of layout an image can hold (x87, SSE and those of COMPONENT_FIELDS): the
    layout of cpuinfo.img and of the signal frames a restore builds."""
    return {comp: place for comp, place in layout.items() if comp < 2 or comp in COMPONENT_FIELDS}


def frame_layout(layout, xstate_bv):
    """The components a signal frame of a task whose XSAVE header says xstate_bv may hold: all
    of layout but the dynamic ones the task does not use (DYNAMIC_COMPONENTS)."""
    return {comp: place for comp, place in layout.items()
            if comp not in DYNAMIC_COMPONENTS or xstate_bv >> comp & 1}


def standard_layout(mask):
    """The layout of mask's components at the standard offsets (images that record no layout);
    XsaveError for a component whose offset is not known that way."""
    unknown = [comp for comp in range(64) if mask >> comp & 1 and comp not in STANDARD_LAYOUT]
    if unknown:
        raise XsaveError(f"XSAVE components {unknown} have no standard offset: the image must record "
                         "its layout (cpuinfo.img)")
    return {comp: place for comp, place in STANDARD_LAYOUT.items() if mask >> comp & 1 or comp < 2}


def compare(image_layout, cpu_layout):
    """(missing, resized): the components of image_layout that cpu_layout lacks, and those it has
    with another size (their state would not fit).  Offsets may differ: to_raw() moves them."""
    missing = sorted(c for c in image_layout if c not in cpu_layout)
    resized = sorted(c for c in image_layout if c in cpu_layout and image_layout[c][1] != cpu_layout[c][1])
    return missing, resized


def entry_mask(fp):
    """The components an image entry holds state for (x87 and SSE always)."""
    mask = 0b11
    if fp.HasField("xsave"):
        for comp, (field, _) in COMPONENT_FIELDS.items():
            if len(getattr(fp.xsave, field)):
                mask |= 1 << comp
    return mask


def _words(raw, offset, size, width):
    fmt = "<%d%s" % (size // width, "I" if width == 4 else "Q")
    return struct.unpack_from(fmt, raw, offset)


def from_raw(raw, layout):
    """user_x86_fpregs_entry (with its xsave sub-message) from raw XSAVE bytes in `layout`."""
    from crpy.images.pb import core_x86_pb2

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
            if xstate_bv >> comp & 1:
                raise XsaveError(f"the task uses {feature_names(1 << comp)[0]} (XSAVE component "
                                 f"{comp} is not in its init state), which crpy cannot store yet")
            continue                       # in its init state: a restore leaves it there
        if offset + size > len(raw):
            raise XsaveError(f"XSAVE area of {len(raw)} bytes ends inside component {comp}")
        field, width = COMPONENT_FIELDS[comp]
        getattr(xs, field).extend(_words(raw, offset, size, width))
    return fp


def to_raw(fp, layout, size=None, drop_unsupported=False):
    """Raw standard-format XSAVE bytes from a user_x86_fpregs_entry, in `layout` (the CPU the
    bytes are for: its components, at its offsets).

    A component the layout has and the entry lacks (an image from a CPU with fewer features)
    is left zero with its xstate_bv bit clear: its init state.  size defaults to the end of
    the last component.  A component this layout lacks is
    dropped if it holds only zeros (its init state); otherwise XsaveError: the task used a
    CPU feature this machine does not have -- unless drop_unsupported, which puts such
    components in their init state (like `criu restore --cpu-cap=none`; see unsupported())."""
    size = layout_size(layout) if size is None else size
    buf = bytearray(size)
    for name in ("cwd", "swd", "twd", "fop"):    # uint32 in the image, 16 bits in the CPU
        if getattr(fp, name) > 0xFFFF:
            raise XsaveError(f"x87 {name} = {getattr(fp, name):#x} does not fit its 16 bits")
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
                raise XsaveError(f"the image holds {feature_names(1 << comp)[0]} state in use (XSAVE "
                                 f"component {comp}, {field}), which this CPU lacks")
            continue
        offset, comp_size = layout[comp]
        _pack_words(buf, offset, words, width, comp_size, field)
    _HEADER.pack_into(buf, LEGACY_SIZE, xstate_bv & mask, 0)
    return bytes(buf)


def unsupported(fp, layout):
    """Components the entry holds in use that the layout (this CPU) lacks, as field names."""
    if not fp.HasField("xsave"):
        return []
    return [field for comp, (field, _) in sorted(COMPONENT_FIELDS.items())
            if comp not in layout and fp.xsave.xstate_bv & (1 << comp) and any(getattr(fp.xsave, field))]


def _pack_words(buf, offset, words, width, size, name):
    if len(words) * width != size:
        raise XsaveError(f"{name} holds {len(words) * width} bytes, the component has {size}")
    fmt = "<%d%s" % (len(words), "I" if width == 4 else "Q")
    struct.pack_into(fmt, buf, offset, *words)
