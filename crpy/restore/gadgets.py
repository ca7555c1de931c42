"""Code the restored task already has, that the restorer's last jump borrows (pure byte search).

The region (blob + args) must be gone from the task's maps, so its munmap cannot return into the
blob.  It runs from a `syscall` in the vDSO followed only by register-clearing xors and `ret`
(possibly after `leave`): the `ret` pops the frame's pretcode, which must be code doing
rt_sigreturn.  That is the task's SA_RESTORER (glibc's __restore_rt) when it installed a handler,
else the same 9-byte sequence found in one of its executable file mappings.
"""

import re

RET, LEAVE_RET = 1, 2            # RST_GADGET_* of restorer.h

SIGRETURN_CODE = bytes.fromhex("48c7c00f0000000f05")   # mov $15,%rax; syscall
SA_RESTORER = 0x04000000

# syscall; [leave]; any number of `xor r32,r32` (31 /r with mod=11, optional REX 41/44/45/48/4c/4d); ret
_GADGET = re.compile(rb"\x0f\x05(\xc9?)((?:[\x41\x44\x45\x48\x4c\x4d]?\x31[\xc0-\xff])*)\xc3", re.S)


def find_unmap_gadget(vdso_bytes):
    """(offset, kind) of the best gadget in the vDSO image, or None.  Prefers the plain ret kind."""
    best = None
    for m in _GADGET.finditer(vdso_bytes):
        kind = LEAVE_RET if m.group(1) else RET
        if kind == RET:
            return m.start(), RET
        if best is None:
            best = (m.start(), kind)
    return best


def task_restorer(sigactions):
    """The sa_restorer of any installed handler with SA_RESTORER, or 0."""
    for handler, flags, restorer, _ in sigactions:
        if handler > 1 and flags & SA_RESTORER and restorer:
            return restorer
    return 0


# (path, offset, length) -> where SIGRETURN_CODE is in that part of the file (-1: nowhere).
# Filled by crpy before it forks a tree (crpy.restore.tree_preload): the tasks inherit it and do
# not each read the same 1.5 MiB of libc text into fresh memory of their own.
_found_in_file = {}


def find_sigreturn(areas, read_file_range):
    """Address of `mov $15,%rax; syscall` in an executable private file mapping of the task.

    read_file_range(path, offset, length) -> bytes reads the file as it will be mapped."""
    for a in areas:
        if a.kind != "file_private" or not a.prot & 4:
            continue
        key = (a.path, a.pgoff, a.length)
        pos = _found_in_file.get(key)
        if pos is None:
            pos = _found_in_file[key] = read_file_range(a.path, a.pgoff, a.length).find(SIGRETURN_CODE)
        if pos >= 0:
            return a.start + pos
    return 0
