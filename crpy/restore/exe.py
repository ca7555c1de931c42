"""Restore step (child): the fd the restorer hands to PR_SET_MM_MAP as the task's exe file.

The kernel (replace_mm_exe_file) refuses to change mm->exe_file with EBUSY while any VMA still
maps the OLD exe file (same path: mount and dentry).  A restored child's old exe is crpy's own,
the Python interpreter it was forked from, and the blob only sets the exe once the task's VMAs
are in place.  So when the task's exe is that very interpreter (a Python program restored by
crpy running on the same python3), its VMAs map the old exe and the change is refused: but the
exe the child inherited is then already the task's, and the blob is told to keep it (exe_fd -1).
A task that maps crpy's interpreter without it being its exe cannot be given its own exe that
way: that is refused here in one line, before the jump.
"""

import os

from crpy.errors import RestoreError
from crpy.resources.fdtable import open_above

KEEP_INHERITED = 0xFFFFFFFF    # prctl_mm_map.exe_fd (u32) -1: leave mm->exe_file as it is


def exe_fd(task, keep_above):
    """The fd (above keep_above) of the task's exe for PR_SET_MM_MAP, or KEEP_INHERITED."""
    own_path, own = _own_exe()
    if task.exe_path == own_path and _same_inode(os.stat(task.exe_path), own):
        return KEEP_INHERITED
    for area in task.areas:
        if area.path == own_path:
            raise RestoreError(f"pid {task.pid} maps {own_path} at {area.start:#x}, the interpreter crpy "
                               f"runs on, but its executable is {task.exe_path}: the kernel cannot set "
                               "that exe while crpy's is mapped",
                               "restore it with crpy running on another python3 binary")
    return open_above(task.exe_path, keep_above)


_own = []                      # [(path, stat)] of crpy's interpreter: every task of a tree forks from it


def _own_exe():
    """(path, stat) of the interpreter crpy runs on, looked up once (crpy.restore.tree_preload
    does it before the first fork, for all the tasks)."""
    if not _own:
        _own.append((os.readlink("/proc/self/exe"), os.stat("/proc/self/exe")))
    return _own[0]


def _same_inode(a, b):
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
