"""The ghosts' janitor: the names a restore puts on the file system for its time (ghost files,
the directories made above them), and the --link-remap links of a dump that does not finish, go
even when crpy is SIGKILLed half-way (crpy.janitor runs it).

A name is announced before it exists, so no kill can fall between making it and announcing it.
Each one is made under a fresh temporary name of crpy's own (announced first: nobody else's
file can have it), then announced under its real name with the inode it has, then renamed into
place without replacing anything.  The janitor removes a real name only while it still is that
inode: a kill before the rename cannot make it remove somebody else's file of the same name.
"""

import errno
import os

from crpy.janitor import Janitor

_RENAME_NOREPLACE = 1


def _remove_listed(listed):
    """Files first, then directories, deepest first; each only if it is still what was made."""
    def is_dir(value):
        return value.startswith("d")
    for path, value in sorted(listed.items(), key=lambda n: (is_dir(n[1]), -len(n[0]))):
        _, _, ident = value.partition(" ")
        try:
            if ident and ident != _identity(os.lstat(path)):
                continue
        except OSError:
            continue
        _remove_quietly(path, is_dir(value))


_janitor = Janitor(_remove_listed)
ready = _janitor.ready
forget = _janitor.forget
stop = _janitor.stop


def made(path, is_dir=False, st=None):
    """`path` is removed by the janitor if crpy dies before forget(path); with st (its stat),
    only while it is still that inode."""
    _janitor.made(path, ("d" if is_dir else "f") + (f" {_identity(st)}" if st else ""))


def make_named(paths, create, is_dir=False):
    """Make a file system object by create(tmp_path) at a temporary name beside paths[0], then
    give it the first of `paths` that is free, and return that; the janitor knows of it at every
    moment.  FileExistsError when every one is taken."""
    tmp = os.path.join(os.path.dirname(paths[0]), f".crpy-new.{os.getpid()}.{os.urandom(6).hex()}")
    made(tmp, is_dir)
    try:
        create(tmp)
        st = os.lstat(tmp)
        for path in paths:
            made(path, is_dir, st)
            try:
                _rename_noreplace(tmp, path, is_dir)
            except BaseException as e:
                forget(path)
                if isinstance(e, FileExistsError) and path != paths[-1]:
                    continue
                raise
            forget(tmp)
            return path
    except BaseException:
        _remove_quietly(tmp, is_dir)
        forget(tmp)
        raise


def _identity(st):
    return f"{st.st_dev}:{st.st_ino}"


def _remove_quietly(path, is_dir):
    try:
        os.rmdir(path) if is_dir else os.unlink(path)
    except OSError:
        pass


def _rename_noreplace(src, dst, is_dir):
    """renameat2(RENAME_NOREPLACE): never over a name that exists (FileExistsError).  On a file
    system without it, a file is linked then unlinked, which does not replace either."""
    import ctypes

    from crpy.kernel.libc import libc

    if libc().renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EINVAL and not is_dir:
        os.link(src, dst)
        os.unlink(src)
        return
    raise OSError(err, os.strerror(err), dst)
