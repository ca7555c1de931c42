"""XSAVE state <-> user_x86_fpregs_entry, on the real state of a real process.

A small C program loads known values into ymm0-15 and PKRU and spins; the test seizes it,
reads NT_X86_XSTATE with ptrace, converts it to the image message and back, and writes the
result back into the task with SETREGSET."""

import os
import struct
import subprocess

import pytest

from crpy.images import framing, xsave
from crpy.kernel import cpuid
from tests.unit.crhelpers import CRIU_FIXTURES, build_c, image_samples

S = image_samples()

PTRACE_SEIZE, PTRACE_INTERRUPT, PTRACE_GETREGSET, PTRACE_SETREGSET = 0x4206, 0x4207, 0x4204, 0x4205
NT_X86_XSTATE = 0x202
WALL = 0x40000000
PKRU_VALUE = 0x55555550  # keys 2..15 denied, 0 and 1 open: harmless for the spinning task

SPINNER = r"""
#include <stdint.h>
#include <unistd.h>
int main(void) {
    static uint8_t pat[512] __attribute__((aligned(32)));
    for (int i = 0; i < 512; i++) pat[i] = (uint8_t)(i * 7 + 3);
#ifdef WITH_PKRU
    __asm__ volatile("wrpkru" :: "a"(PKRU_VALUE), "c"(0), "d"(0));
#endif
    __asm__ volatile(
        "vmovdqu 0(%0),%%ymm0\n vmovdqu 32(%0),%%ymm1\n vmovdqu 64(%0),%%ymm2\n vmovdqu 96(%0),%%ymm3\n"
        "vmovdqu 128(%0),%%ymm4\n vmovdqu 160(%0),%%ymm5\n vmovdqu 192(%0),%%ymm6\n vmovdqu 224(%0),%%ymm7\n"
        "vmovdqu 256(%0),%%ymm8\n vmovdqu 288(%0),%%ymm9\n vmovdqu 320(%0),%%ymm10\n vmovdqu 352(%0),%%ymm11\n"
        "vmovdqu 384(%0),%%ymm12\n vmovdqu 416(%0),%%ymm13\n vmovdqu 448(%0),%%ymm14\n vmovdqu 480(%0),%%ymm15\n"
        :: "r"(pat) : "memory");
    __asm__ volatile("mov $1,%%eax; mov $1,%%edi; lea 1f(%%rip),%%rsi; mov $2,%%edx; syscall; jmp 2f;"
                     "1: .ascii \"R\\n\"; 2:" ::: "rax", "rdi", "rsi", "rdx", "rcx", "r11", "memory");
    for (;;) __asm__ volatile("pause");
}
"""


def _needs_avx():
    """The spinner loads ymm registers: skip, by name, on a CPU whose XCR0 has no AVX state."""
    if not cpuid.xcr0() & 0b100:
        pytest.skip("this CPU has no AVX (XCR0 bit 2 clear): the ymm round trip cannot run")


def _pattern(i):
    return (i * 7 + 3) & 0xFF


@pytest.fixture(scope="module")
def spinner(tmp_path_factory):
    _needs_avx()
    flags = [f"-DPKRU_VALUE={PKRU_VALUE:#x}"] + (["-DWITH_PKRU"] if 9 in cpuid.xsave_layout() else [])
    return build_c(tmp_path_factory.mktemp("xsave"), "spin", SPINNER, "-O1", "-mavx", *flags)


def _regset(lib, ffi, pid, request, data=None):
    size = 16384
    buf = ffi.new("char[]", size)
    iov = ffi.new("struct iovec *")
    iov.iov_base = buf
    iov.iov_len = size
    if data is not None:
        ffi.memmove(buf, data, len(data))
        iov.iov_len = len(data)
    res = lib.crpy_ptrace(request, pid, NT_X86_XSTATE, int(ffi.cast("uintptr_t", iov)))
    assert res == 0, f"ptrace regset request {request:#x} failed: errno {ffi.errno}"
    return bytes(ffi.buffer(buf, iov.iov_len))


@pytest.fixture()
def stopped_task(spinner):
    """(pid, lib, ffi) of the spinner, seized and in a group-stop-like event stop."""
    from crpy.kernel._sys import ffi, lib

    proc = subprocess.Popen([spinner], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"R\n"
        assert lib.crpy_ptrace(PTRACE_SEIZE, proc.pid, 0, 0) == 0
        assert lib.crpy_ptrace(PTRACE_INTERRUPT, proc.pid, 0, 0) == 0
        _, status = os.waitpid(proc.pid, WALL)
        assert os.WIFSTOPPED(status) and status >> 16 == 128
        yield proc.pid, lib, ffi
    finally:
        proc.kill()
        proc.wait()


def test_layout_of_this_cpu():
    _needs_avx()
    layout = cpuid.xsave_layout()
    assert layout[2] == (576, 256), "AVX upper halves sit right after the XSAVE header"
    assert cpuid.xcr0() & 0b111 == 0b111
    assert cpuid.xsave_size() == max(off + size for off, size in layout.values())
    assert set(layout) == {c for c in range(64) if cpuid.xcr0() >> c & 1}


def test_real_state_round_trip(stopped_task, tmp_path):
    pid, lib, ffi = stopped_task
    raw = _regset(lib, ffi, pid, PTRACE_GETREGSET)
    assert len(raw) == cpuid.xsave_size()
    fp = xsave.from_raw(raw, cpuid.xsave_layout())
    # the values the task loaded: ymm_i low halves in xmm_space, upper halves in ymmh_space
    xmm = struct.pack("<64I", *fp.xmm_space)
    ymmh = struct.pack("<64I", *fp.xsave.ymmh_space)
    for reg in range(16):
        assert xmm[16 * reg:16 * reg + 16] == bytes(_pattern(32 * reg + j) for j in range(16))
        assert ymmh[16 * reg:16 * reg + 16] == bytes(_pattern(32 * reg + 16 + j) for j in range(16))
    assert fp.xsave.xstate_bv & 0b110 == 0b110
    if 9 in cpuid.xsave_layout():
        assert list(fp.xsave.pkru) == [PKRU_VALUE, 0]

    # through an image file and back: every state byte identical; 416..511 are not state
    core = framing.message_class("core_pb2.core_entry")(mtype=1)
    core.thread_info.fpregs.CopyFrom(fp)
    core.thread_info.clear_tid_addr = 0
    for name in ("r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss "
                 "fs_base gs_base ds es fs gs").split():
        setattr(core.thread_info.gpregs, name, 0)
    path = framing.image_path(tmp_path, "core", pid)
    framing.write_image(path, "core", [core])
    back = xsave.to_raw(framing.read_one(path, "core").thread_info.fpregs, cpuid.xsave_layout(), size=len(raw))
    assert back[:416] == raw[:416] and back[512:] == raw[512:]
    assert back[416:512] == bytes(96)

    # the kernel takes it back, and gives the same state again
    _regset(lib, ffi, pid, PTRACE_SETREGSET, back)
    again = _regset(lib, ffi, pid, PTRACE_GETREGSET)
    assert again[:416] == raw[:416] and again[512:] == raw[512:]


def test_foreign_component_is_refused_unless_dropped():
    layout = {0: (0, 160), 1: (160, 256), 2: (576, 256)}
    fp = xsave.from_raw(bytes(512) + struct.pack("<QQ", 0b111, 0) + bytes(48) + bytes(range(256)), layout)
    fp.xsave.xstate_bv |= 1 << 5
    fp.xsave.opmask_reg.extend([1, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(xsave.XsaveError, match="opmask"):
        xsave.to_raw(fp, layout)
    assert xsave.unsupported(fp, layout) == ["opmask_reg"]
    raw = xsave.to_raw(fp, layout, drop_unsupported=True)
    assert struct.unpack_from("<Q", raw, 512)[0] == 0b111 and raw[576:832] == bytes(range(256))
    fp.xsave.opmask_reg[0] = 0  # all-zero state is the init state: dropped silently
    xsave.to_raw(fp, layout)


def test_compacted_format_is_refused():
    with pytest.raises(xsave.XsaveError, match="compacted"):
        xsave.from_raw(bytes(512) + struct.pack("<QQ", 3, 1 << 63) + bytes(48), {0: (0, 160), 1: (160, 256)})


def test_fixture_state_converts(tmp_path):
    """The CRIU 4.2 fixtures come from an AVX-512 machine and have no cpuinfo.img: their layout is
    the components their core holds at the standard offsets; the state converts back through it."""
    d = CRIU_FIXTURES / "counter-images"
    assert not (d / "cpuinfo.img").exists()
    fp = framing.read_one(str(d / "core-8802.img"), "core").thread_info.fpregs
    assert xsave.entry_mask(fp) == 0xE7
    layout = xsave.standard_layout(xsave.entry_mask(fp))
    assert layout == {0: (0, 160), 1: (160, 256), 2: (576, 256), 5: (1088, 64), 6: (1152, 512), 7: (1664, 1024)}
    raw = xsave.to_raw(fp, layout)
    assert len(raw) == 2688
    fp.xsave.ClearField("cet")  # CET state is not in the NT_X86_XSTATE layout (own regset)
    assert xsave.from_raw(raw, layout) == fp


# Two real CPUs with the same components at different offsets (CPUID 0xD): an AMD EPYC of family
# 25 packs the AVX-512 state right after AVX; Intel leaves room for MPX before it.
AMD_ZEN4 = {0: (0, 160), 1: (160, 256), 2: (576, 256), 5: (832, 64), 6: (896, 512), 7: (1408, 1024)}
INTEL = {0: (0, 160), 1: (160, 256), 2: (576, 256), 5: (1088, 64), 6: (1152, 512), 7: (1664, 1024),
         9: (2688, 8)}
AMD_ZEN3 = {0: (0, 160), 1: (160, 256), 2: (576, 256), 9: (2432, 8)}


def _synthetic(layout):
    return S.sample_xsave_raw(layout)


def test_codec_uses_the_layout_it_is_given_not_this_cpu():
    """State read in one CPU's layout is written in another's: each component moves to the other
    offsets, byte for byte, whatever CPU the test runs on."""
    raw_amd = _synthetic(AMD_ZEN4)
    fp = xsave.from_raw(raw_amd, AMD_ZEN4)
    assert struct.unpack("<8Q", raw_amd[832:896]) == tuple(fp.xsave.opmask_reg)
    raw_intel = xsave.to_raw(fp, INTEL)
    assert len(raw_intel) == 2696
    for comp in (2, 5, 6, 7):
        (a_off, size), (i_off, _) = AMD_ZEN4[comp], INTEL[comp]
        assert raw_intel[i_off:i_off + size] == raw_amd[a_off:a_off + size], comp
    assert raw_intel[:416] == raw_amd[:416]
    # PKRU: Intel has it, the AMD image has none: zero and its xstate_bv bit clear (init state)
    assert raw_intel[2688:2696] == bytes(8)
    bv = struct.unpack_from("<Q", raw_intel, 512)[0]
    assert bv == struct.unpack_from("<Q", raw_amd, 512)[0] and not bv & 1 << 9
    # and back: the same bytes in the first layout
    back = xsave.to_raw(xsave.from_raw(raw_intel, INTEL), AMD_ZEN4)
    assert back[:416] == raw_amd[:416] and back[512:] == raw_amd[512:]


def test_pkru_at_another_offset():
    """PKRU at 2432 (AMD without AVX-512) and at 2688 (Intel) is the same value in the image."""
    raw = bytearray(_synthetic(AMD_ZEN3))
    struct.pack_into("<II", raw, 2432, 0x55555554, 0)
    fp = xsave.from_raw(bytes(raw), AMD_ZEN3)
    assert list(fp.xsave.pkru) == [0x55555554, 0]
    intel = xsave.to_raw(fp, INTEL)
    assert struct.unpack_from("<I", intel, 2688)[0] == 0x55555554
    assert struct.unpack_from("<Q", intel, 512)[0] & 1 << 9
    with pytest.raises(xsave.XsaveError, match="pkru"):   # in use, and AMD_ZEN4 has no PKRU
        xsave.to_raw(fp, AMD_ZEN4)


def test_layout_helpers():
    assert xsave.layout_mask(AMD_ZEN4) == 0xE7 and xsave.layout_size(AMD_ZEN4) == 2432
    assert xsave.feature_names(0x2E7) == ["x87", "sse", "avx", "avx512", "pkru"]
    assert xsave.feature_names(1 << 17 | 1 << 18 | 1 << 40) == ["amx", "xfeature40"]
    assert xsave.compare(INTEL, AMD_ZEN4) == ([9], [])
    assert xsave.compare(AMD_ZEN4, INTEL) == ([], [])
    assert xsave.compare({**AMD_ZEN4, 5: (832, 128)}, INTEL) == ([], [5])
    with pytest.raises(xsave.XsaveError, match="17"):
        xsave.standard_layout(0b11 | 1 << 17)


INTEL_AMX = {**INTEL, 17: (2752, 64), 18: (2816, 8192)}      # Sapphire and Emerald Rapids


def test_amx_in_its_init_state_is_left_out_and_in_use_refused():
    """An image has no field for AMX tiles (nor has CRIU's): a task whose tiles are in their init
    state (every task that never asked for AMX) converts without them, one using them is refused."""
    raw = bytearray(_synthetic(INTEL_AMX))
    struct.pack_into("<Q", raw, 512, 0x2E7)               # tiles in their init state
    fp = xsave.from_raw(bytes(raw), INTEL_AMX)
    assert xsave.entry_mask(fp) == 0x2E7 and fp.xsave.xstate_bv == 0x2E7
    back = xsave.to_raw(fp, xsave.stored_layout(INTEL_AMX))
    assert len(back) == 2696 and back[512:] == bytes(raw[512:2696])
    for comp in (17, 18):
        struct.pack_into("<Q", raw, 512, 0x2E7 | 1 << comp)
        with pytest.raises(xsave.XsaveError, match=f"uses amx \\(XSAVE component {comp} "):
            xsave.from_raw(bytes(raw), INTEL_AMX)


def test_frame_layouts():
    """A signal frame of a task that never used AMX tile data has no room for it (the kernel
    takes no bigger frame from such a task); the stored layout is the same on CPUs without AMX."""
    assert xsave.stored_layout(INTEL_AMX) == INTEL and xsave.stored_layout(AMD_ZEN4) == AMD_ZEN4
    assert xsave.frame_layout(INTEL_AMX, 0x2E7) == {**INTEL, 17: (2752, 64)}
    assert xsave.frame_layout(INTEL_AMX, 0x2E7 | 1 << 18) == INTEL_AMX
