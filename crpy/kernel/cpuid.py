"""XSAVE facts of this CPU: XCR0 and the standard-format layout of each state component.

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
