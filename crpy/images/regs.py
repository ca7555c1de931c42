"""General registers: kernel struct user_regs_struct <-> CRIU's user_x86_regs_entry.

The kernel names (rbp, rax, orig_rax, rip, eflags, rsp ...) and CRIU's (bp, ax, orig_ax, ip,
flags, sp ...) differ; the order is the same.  One table here keeps dump and restore agreeing.
"""

# (CRIU field, struct user_regs_struct member), in the kernel's order
GPREGS = (
    ("r15", "r15"), ("r14", "r14"), ("r13", "r13"), ("r12", "r12"), ("bp", "rbp"), ("bx", "rbx"),
    ("r11", "r11"), ("r10", "r10"), ("r9", "r9"), ("r8", "r8"), ("ax", "rax"), ("cx", "rcx"),
    ("dx", "rdx"), ("si", "rsi"), ("di", "rdi"), ("orig_ax", "orig_rax"), ("ip", "rip"), ("cs", "cs"),
    ("flags", "eflags"), ("sp", "rsp"), ("ss", "ss"), ("fs_base", "fs_base"), ("gs_base", "gs_base"),
    ("ds", "ds"), ("es", "es"), ("fs", "fs"), ("gs", "gs"),
)

_MASK = (1 << 64) - 1


def _get(regs, name):
    return regs[name] if isinstance(regs, dict) else getattr(regs, name)


def gpregs_entry(regs):
    """user_x86_regs_entry (mode NATIVE) from a user_regs_struct (cffi struct, object or dict)."""
    from crpy.images.pb import core_x86_pb2

    entry = core_x86_pb2.user_x86_regs_entry(mode=core_x86_pb2.NATIVE)
    for criu, kernel in GPREGS:
        setattr(entry, criu, int(_get(regs, kernel)) & _MASK)  # orig_rax -1 is stored as 2**64-1
    return entry


def user_regs(entry):
    """{user_regs_struct member: value} from a user_x86_regs_entry (assign into a cffi struct)."""
    return {kernel: getattr(entry, criu) for criu, kernel in GPREGS}
