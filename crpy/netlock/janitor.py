"""The network lock's janitor: a lock the dump took goes even when crpy is SIGKILLed half-way.

A small child of crpy, forked before the first table is made, reads "+METHOD NAME" (a lock made)
and "-NAME" (crpy lifted it, or keeps it on purpose for the restore) from a pipe.  When the pipe
ends, because crpy closed it or died, it lifts every lock still listed and exits.  It ignores
SIGINT and SIGTERM: a Ctrl-C reaches the whole process group, and crpy then cleans up itself.
"""

import os
import signal
import time

_pipe = None                 # crpy's write end
_pid = None                  # the janitor's pid
_REAP_S = 5.0


def ready():
    """The janitor runs: called before a lock is made (a kill between the two leaves nothing)."""
    global _pipe, _pid
    if _pipe is None:
        _pipe, _pid = _start()


def made(method, name):
    ready()
    os.write(_pipe, f"+{method} {name}\n".encode())


def forget(name):
    if _pipe is not None:
        os.write(_pipe, f"-{name}\n".encode())


def stop():
    """Nothing left for the janitor: it ends, and is reaped."""
    global _pipe, _pid
    if _pipe is None:
        return
    os.close(_pipe)
    deadline = time.monotonic() + _REAP_S
    while time.monotonic() < deadline:
        try:
            if os.waitpid(_pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            break
        time.sleep(0.005)
    _pipe = _pid = None


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
    os.closerange(3, r)                      # crpy's fds are not its business (stderr kept for the tools)
    os.closerange(r + 1, 1 << 16)
    locks, buf = {}, b""
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = line.decode()
            if text.startswith("+"):
                method, name = text[1:].split(" ", 1)
                locks[name] = method
            elif text.startswith("-"):
                locks.pop(text[1:], None)
    from crpy import netlock

    for name, method in locks.items():
        try:
            netlock.backend(method).remove(name)
        except Exception:                     # nothing to report to: crpy is gone
            pass
