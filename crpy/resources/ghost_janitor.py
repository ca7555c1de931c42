"""The ghosts' janitor: the names a restore puts on the file system for its time (ghost files,
the directories made above them), and the --link-remap links of a dump that does not finish, go
even when crpy is SIGKILLed half-way.

A small child of crpy, forked at the first name, reads "+f PATH" / "+d PATH" (a name made) and
"-PATH" (crpy removed it itself) from a pipe.  When the pipe ends it removes what is still listed
(files, then directories deepest first) and exits: at EOF because crpy closed it after removing
everything (nothing left to do), or because crpy died (the restored tasks, which inherited the
pipe, die with crpy before the go, and close it at their fd restore).  It ignores SIGINT and
SIGTERM: a Ctrl-C reaches the whole process group, and crpy then cleans up itself.
"""

import os
import signal
import time

_pipe = None                 # crpy's write end
_pid = None                  # the janitor's pid
_REAP_S = 2.0


def ready():
    """The janitor is running: called before a name is made, so that the fork is not in the
    window between making the name and announcing it (a kill there would leave the name)."""
    global _pipe, _pid
    if _pipe is None:
        _pipe, _pid = _start()


def made(path, is_dir=False):
    """A name made on the file system: removed by the janitor if crpy dies before forget()."""
    ready()
    _say(f"+{'d' if is_dir else 'f'} {path}")


def forget(path):
    if _pipe is not None:
        _say(f"-{path}")


def stop():
    """Everything made is removed by crpy itself: the janitor ends (and is reaped, briefly)."""
    global _pipe, _pid
    if _pipe is None:
        return
    os.close(_pipe)
    deadline = time.monotonic() + _REAP_S
    while time.monotonic() < deadline:       # a dying restored task may hold the pipe a moment
        try:
            if os.waitpid(_pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(0.005)
    _pipe = _pid = None


def _say(line):
    if "\n" in line:
        raise ValueError(f"a ghost name with a newline: {line!r}")
    os.write(_pipe, (line + "\n").encode("utf-8", "surrogateescape"))


def _start():
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            _run(r)
        finally:
            os._exit(0)
    os.close(r)
    return w, pid


def _run(r):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.closerange(0, r)                      # crpy's fds (images, held ghosts) are not its business
    os.closerange(r + 1, 1 << 16)
    names, buf = {}, b""
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = line.decode("utf-8", "surrogateescape")
            if text.startswith("+"):
                names[text[3:]] = text[1] == "d"
            elif text.startswith("-"):
                names.pop(text[1:], None)
    for path, is_dir in sorted(names.items(), key=lambda n: (n[1], -len(n[0]))):
        try:
            os.rmdir(path) if is_dir else os.unlink(path)
        except OSError:
            pass
