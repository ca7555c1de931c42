"""Typed errors of crpy.

Every failure a user can meet is one of these: it carries what failed and where (pid, fd, kind,
image, offset) and a hint, and the CLI prints it as one line, never as a traceback.  The kernel
layer turns raw errno values into the process errors below (psutil style), so callers never
compare errno numbers themselves.
"""

import errno as _errno


class CrpyError(Exception):
    """Base of every error crpy reports to a user."""

    hint = ""

    def __init__(self, message, hint=None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self):
        text = str(self)
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def error_line(self):
        """The line a command prints on stderr for this error."""
        return f"crpy: error: {self.one_line()}"


class KernelError(CrpyError):
    """A syscall failed; `errno` and `what` say which and how."""

    def __init__(self, what, err, hint=None):
        self.what = what
        self.errno = err
        name = _errno.errorcode.get(err, str(err))
        super().__init__(f"{what}: {name} ({_strerror(err)})", hint)


class NoSuchProcess(KernelError):
    """The task is gone (ESRCH, or /proc/PID vanished)."""

    def __init__(self, pid, what="process", err=_errno.ESRCH):
        self.pid = pid
        super().__init__(f"{what} {pid}", err, "is the pid right, and is the task still alive?")


class AccessDenied(KernelError):
    """The kernel refused (EPERM/EACCES)."""

    def __init__(self, what, err=_errno.EPERM, hint="crpy needs root"):
        super().__init__(what, err, hint)


class SeizeError(CrpyError):
    """A task could not be seized (ptrace) or frozen."""


class ParasiteError(CrpyError):
    """Running, talking to or curing the parasite failed."""


class DumpError(CrpyError):
    """A dump step failed for a reason of its own."""


class UnsupportedResource(DumpError):
    """The task holds something crpy cannot dump (yet)."""

    def __init__(self, pid, kind, fd=None, target=None, hint=None):
        self.pid, self.kind, self.fd, self.target = pid, kind, fd, target
        where = f"pid {pid}" + (f" fd {fd}" if fd is not None else "")
        what = f"{kind}" + (f" {target}" if target else "")
        super().__init__(f"{where}: unsupported {what}", hint)


class ImageError(CrpyError):
    """An image is missing, truncated, corrupted or of the wrong kind or version."""

    def __init__(self, path, message, offset=None, hint=None):
        self.path, self.offset = path, offset
        where = str(path) + (f" at offset {offset}" if offset is not None else "")
        super().__init__(f"{where}: {message}", hint)


class RestoreError(CrpyError):
    """Restoring failed; nothing half-restored is left behind."""


class OptionError(CrpyError):
    """An option crpy does not implement, or a bad combination of options."""


def _strerror(err):
    import os

    return os.strerror(err)


def from_errno(err, what, pid=None):
    """Map an errno to the matching typed error (the one place that knows the mapping)."""
    if err == _errno.ESRCH and pid is not None:
        return NoSuchProcess(pid, what)
    if err in (_errno.EPERM, _errno.EACCES):
        return AccessDenied(what, err)
    return KernelError(what, err)
