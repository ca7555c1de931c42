"""user_regs_struct <-> user_x86_regs_entry keeps every register, in the kernel's order."""

from crpy.images import regs


def test_round_trip_through_a_cffi_struct():
    from crpy.kernel._sys import ffi

    src = ffi.new("struct user_regs_struct *")
    for i, (_, kernel) in enumerate(regs.GPREGS):
        setattr(src, kernel, 0x1111 * (i + 1))
    src.orig_rax = (1 << 64) - 1  # -1: not in a syscall
    entry = regs.gpregs_entry(src)
    assert entry.bp == src.rbp and entry.flags == src.eflags and entry.orig_ax == (1 << 64) - 1
    assert entry.IsInitialized()
    dst = ffi.new("struct user_regs_struct *")
    for name, value in regs.user_regs(entry).items():
        setattr(dst, name, value)
    assert bytes(ffi.buffer(dst)) == bytes(ffi.buffer(src))


def test_table_covers_the_struct_and_the_message():
    from crpy.images.pb import core_x86_pb2
    from crpy.kernel._sys import ffi

    kernel_fields = [name for name, _ in ffi.typeof("struct user_regs_struct").fields]
    assert [k for _, k in regs.GPREGS] == kernel_fields
    msg_fields = [f.name for f in core_x86_pb2.user_x86_regs_entry.DESCRIPTOR.fields if f.name != "mode"]
    assert [c for c, _ in regs.GPREGS] == msg_fields
