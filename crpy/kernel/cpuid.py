"""Facts of this CPU: vendor, signature, feature words, model name; XCR0 and the standard-format
layout of each XSAVE state component.

The layout is what PTRACE_GETREGSET NT_X86_XSTATE returns and what a signal frame holds:
the 512-byte legacy FXSAVE area, the 64-byte XSAVE header, then component i (i >= 2) at the
offset CPUID leaf 0xD sub-leaf i gives (EBX), EAX bytes long.
"""

import functools

XFEATURE_NAMES = {
    0: "x87", 1: "sse", 2: "avx", 3: "bndregs", 4: "bndcsr", 5: "opmask", 6: "zmm_hi256",
    7: "hi16_zmm", 8: "pt", 9: "pkru", 10: "pasid", 11: "cet_user", 12: "cet_supervisor",
    17: "xtilecfg", 18: "xtiledata",
}


def _sys():
    from crpy.kernel._sys import ffi, lib

    return ffi, lib


def cpuid(leaf, subleaf=0):
    """(eax, ebx, ecx, edx) of CPUID leaf/subleaf; ValueError if the CPU lacks the leaf."""
    ffi, lib = _sys()
    out = ffi.new("uint32_t[4]")
    if lib.crpy_cpuid(leaf, subleaf, out) != 0:
        raise ValueError(f"CPUID leaf {leaf:#x} is not supported by this CPU")
    return tuple(out)


@functools.lru_cache(maxsize=None)
def xcr0():
    """XCR0: the XSAVE components enabled for user space (x87|SSE only without OSXSAVE)."""
    if not cpuid(1)[2] & (1 << 27):  # OSXSAVE clear: xgetbv would raise #UD
        return 0b11
    _, lib = _sys()
    return int(lib.crpy_xgetbv(0))


@functools.lru_cache(maxsize=None)
def xsave_size():
    """Size of the standard XSAVE area for the features in XCR0 (CPUID 0xD.0 EBX)."""
    return cpuid(0xD, 0)[1]


@functools.lru_cache(maxsize=None)
def xsave_layout():
    """{component number: (offset, size)} of every user component enabled in XCR0.

    Components 0 (x87) and 1 (SSE) live in the legacy area and are given as their extents
    there: x87 (0, 160), sse (160, 256); the header is at 512."""
    layout = {0: (0, 160), 1: (160, 256)}
    mask = xcr0()
    for i in range(2, 64):
        if mask & (1 << i):
            size, offset = cpuid(0xD, i)[:2]
            layout[i] = (offset, size)
    return layout


@functools.lru_cache(maxsize=None)
def xsave_size_max():
    """Size of the standard XSAVE area for every component the CPU supports (CPUID 0xD.0 ECX)."""
    return cpuid(0xD, 0)[2]


def vendor():
    """The vendor string of CPUID leaf 0, e.g. "AuthenticAMD", "GenuineIntel"."""
    _, b, c, d = cpuid(0)
    return b"".join(r.to_bytes(4, "little") for r in (b, d, c)).decode("ascii", "replace")


def signature():
    """(family, model, stepping) of CPUID leaf 1, with the extended family and model folded in."""
    eax = cpuid(1)[0]
    family, model, stepping = eax >> 8 & 0xF, eax >> 4 & 0xF, eax & 0xF
    if family == 0xF:
        family += eax >> 20 & 0xFF
    if family >= 6:
        model += (eax >> 16 & 0xF) << 4
    return family, model, stepping


def model_name():
    """The brand string (CPUID 0x80000002..4), or "" if the CPU has none."""
    try:
        regs = [r for leaf in (0x80000002, 0x80000003, 0x80000004) for r in cpuid(leaf)]
    except ValueError:
        return ""
    return b"".join(r.to_bytes(4, "little") for r in regs).split(b"\0")[0].decode("ascii", "replace").strip()


# The feature words in compel's order (CRIU's cpuinfo.img capability, version 2: 19 words): the
# (leaf, subleaf, register) each word is, or None for the words Linux makes up itself.
CAPABILITY_WORDS = (
    (1, 0, 3), (0x80000001, 0, 3), (0x80860001, 0, 3), None, (1, 0, 2), (0xC0000001, 0, 3),
    (0x80000001, 0, 2), None, None, (7, 0, 1), (0xD, 1, 0), (7, 0, 2), (0xF, 1, 3),
    (0x80000008, 0, 1), (6, 0, 0), (0x8000000A, 0, 3), (0xF, 0, 3), (0x80000007, 0, 1), (7, 0, 3),
)


def capability_words():
    """The 19 feature words of CAPABILITY_WORDS as CPUID gives them (0 for a leaf the CPU lacks
    and for the made-up words)."""
    words = []
    for spec in CAPABILITY_WORDS:
        try:
            words.append(cpuid(spec[0], spec[1])[spec[2]] if spec else 0)
        except ValueError:
            words.append(0)
    return words
