"""Unit tests of the restore side's rt_sigframe builder (crpy.restore.sigframe): layout, placement,
syscall-restart fix-ups and the XSAVE software-bytes/magic2 patching the kernel insists on."""

import struct

import pytest

from crpy.restore import sigframe as sf

XSIZE = 2440          # an AVX2 + PKRU machine; any size above the header works the same
XCR0 = 0x207


def regs(**over):
    r = {n: 0 for n in sf.REG_NAMES}
    r.update(r8=8, r9=9, r10=10, r11=11, r12=12, r13=13, r14=14, r15=15, rdi=0xd1, rsi=0x51,
             rbp=0xb0, rbx=0xb1, rdx=0xd0, rax=0xa0, rcx=0xc0, rsp=0x7ffd_0000_1000, rip=0x5555_0000_1234,
             eflags=0x246, cs=0x33, ss=0x2b, orig_rax=(1 << 64) - 1)
    r.update(over)
    return r


def xsave_image(size=XSIZE):
    buf = bytearray(size)
    struct.pack_into("<I", buf, 24, 0x1f80)                    # mxcsr
    buf[160:416] = bytes(range(256))                          # xmm0-15
    buf[464:472] = struct.pack("<Q", XCR0)                    # what ptrace leaves there
    struct.pack_into("<QQ", buf, 512, 0x207 | 0x10, 0x8000000000000001)   # stray bit, compacted
    buf[576:832] = bytes(255 - i for i in range(256))         # ymm upper halves
    return bytes(buf)


def sigcontext(frame):
    data = frame.data
    return struct.unpack_from("<18Q4H5Q", data, sf.MCONTEXT_OFF)


def test_placement_matches_the_kernel():
    rsp = 0x7ffd_0000_1008
    frame = sf.build_sigframe(regs(rsp=rsp), xsave_image(), XSIZE, XCR0, 0)
    assert frame.fpstate % 64 == 0
    assert frame.fpstate + XSIZE + 4 <= rsp - sf.REDZONE
    assert (frame.addr + 8) % 16 == 0                       # rsp at sigreturn is 16-aligned
    assert frame.addr + sf.FRAME_HEAD <= frame.fpstate
    assert frame.addr + len(frame.data) == frame.fpstate + XSIZE + 4


def test_ucontext_fields():
    frame = sf.build_sigframe(regs(), xsave_image(), XSIZE, XCR0, sigmask=0x4000_0200,
                              altstack=(0x1000, 0, 0x2000), pretcode=0xdead_beef)
    pretcode, uc_flags, uc_link = struct.unpack_from("<QQQ", frame.data, 0)
    assert (pretcode, uc_flags, uc_link) == (0xdead_beef, 7, 0)
    assert struct.unpack_from("<QiiQ", frame.data, 24) == (0x1000, 0, 0, 0x2000)
    assert struct.unpack_from("<Q", frame.data, sf.SIGMASK_OFF)[0] == 0x4000_0200
    assert frame.data[312:440] == bytes(128)                # siginfo stays zero


def test_sigcontext_registers_in_kernel_order():
    r = regs()
    frame = sf.build_sigframe(r, xsave_image(), XSIZE, XCR0, 0)
    sc = sigcontext(frame)
    names = ("r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rdi", "rsi", "rbp", "rbx",
             "rdx", "rax", "rcx", "rsp", "rip", "eflags")
    assert sc[:18] == tuple(r[n] for n in names)
    cs, gs, fs, ss = sc[18:22]
    assert (cs, ss) == (0x33, 0x2b)
    assert sc[26] == frame.fpstate                           # the fpstate pointer


def test_fpstate_sw_bytes_and_magic2():
    frame = sf.build_sigframe(regs(), xsave_image(), XSIZE, XCR0, 0)
    fp = frame.data[frame.fpstate - frame.addr:]
    magic1, ext, feats, size = struct.unpack_from("<IIQI", fp, 464)
    assert (magic1, ext, feats, size) == (sf.FP_XSTATE_MAGIC1, XSIZE + 4, XCR0, XSIZE)
    assert fp[484:512] == bytes(28)
    assert struct.unpack_from("<I", fp, XSIZE)[0] == sf.FP_XSTATE_MAGIC2
    assert len(fp) == XSIZE + 4
    xstate_bv, xcomp_bv = struct.unpack_from("<QQ", fp, 512)
    assert xstate_bv == 0x207                                # bits outside XCR0 dropped
    assert xcomp_bv == 0 and fp[528:576] == bytes(48)        # standard format, reserved zero
    assert fp[160:416] == bytes(range(256)) and fp[576:832] == bytes(255 - i for i in range(256))


def test_fpstate_resized_to_this_cpu():
    small = xsave_image(1024)
    fp = sf.patch_fpstate(small, XSIZE, XCR0)
    assert len(fp) == XSIZE + 4 and fp[1024:XSIZE] == bytes(XSIZE - 1024)
    with pytest.raises(ValueError):
        sf.patch_fpstate(small, 512, XCR0)


@pytest.mark.parametrize("err", [512, 513, 514, 516])
def test_restart_fixup_reissues_the_syscall(err):
    r = regs(orig_rax=35, rax=(1 << 64) - err, rip=0x1002)
    fixed = sf.restart_fixup(r)
    assert fixed["rax"] == 35 and fixed["rip"] == 0x1000
    assert r["rip"] == 0x1002                                # input untouched
    frame = sf.build_sigframe(r, xsave_image(), XSIZE, XCR0, 0)
    sc = sigcontext(frame)
    assert sc[13] == 35 and sc[16] == 0x1000                 # rax, rip in the frame


@pytest.mark.parametrize("orig,rax", [
    ((1 << 64) - 1, (1 << 64) - 514),    # not in a syscall: a -514 in rax is just a value
    (35, 0),                             # syscall finished
    (35, (1 << 64) - 4),                 # -EINTR is final
    (35, (1 << 64) - 515),               # not a restart code
])
def test_restart_fixup_leaves_other_states(orig, rax):
    r = regs(orig_rax=orig, rax=rax, rip=0x1002)
    assert sf.restart_fixup(r) == r
