"""Janitors: what crpy puts on the machine for a while (a ghost file, a network lock) goes even
when crpy is SIGKILLed half-way.

A janitor is a small child of crpy, forked before the first thing it will have to undo is made.
crpy tells it through a pipe what it made ("+KEY VALUE") and what it undid itself or keeps on
purpose ("-KEY").  When the pipe ends, because crpy closed it (stop) or died, the janitor hands
what is still listed to its cleanup function and exits.  Restored tasks inherit the write end
until they restore their own fds; if crpy dies first they die too (PDEATHSIG), so the end comes.

The janitor ignores SIGINT and SIGTERM: a Ctrl-C reaches the whole process group, and crpy then
cleans up itself.  Records are NUL-terminated, so keys may be any path.
"""

import os
import signal
import time


class Janitor:
    """One janitor process; cleanup(listed) runs in it, listed being {key: value} (str)."""

    def __init__(self, cleanup, reap_s=2.0, keep_stderr=False):
        self._cleanup = cleanup
        self._reap_s = reap_s
        self._keep_stderr = keep_stderr       # the network tools it runs may have something to say
        self._pipe = None                     # crpy's write end
        self._pid = None

    def ready(self):
        """The janitor runs: call it before making the first thing, so that the fork is never in
        the window between making a thing and announcing it."""
        if self._pipe is None:
            self._pipe, self._pid = self._start()

    def made(self, key, value=""):
        """Announce `key` before it is made: undone at the end unless forgotten."""
        self.ready()
        self._send(b"+", key, value)

    def forget(self, key):
        if self._pipe is not None:
            self._send(b"-", key, "")

    def stop(self):
        """Nothing left for the janitor: it ends, and is reaped (briefly: a dying restored task
        may hold the pipe a moment)."""
        if self._pipe is None:
            return
        os.close(self._pipe)
        deadline = time.monotonic() + self._reap_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(self._pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.005)
        self._pipe = self._pid = None

    def _send(self, op, key, value):
        if "\0" in key or "\0" in value:
            raise ValueError(f"a janitor record with a NUL byte: {key!r}")
        os.write(self._pipe, op + os.fsencode(key) + b"\0" + os.fsencode(value) + b"\0")

    def _start(self):
        r, w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                self._run(r)
            finally:
                os._exit(0)
        os.close(r)
        return w, pid

    def _run(self, r):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.closerange(3 if self._keep_stderr else 0, r)   # crpy's fds (images, ghosts) are not its business
        os.closerange(r + 1, 1 << 16)
        listed = _read_records(r)
        try:
            self._cleanup(listed)
        except Exception:                     # nothing to report to: crpy is gone or done
            pass


def _read_records(r):
    """{key: value} of what was announced and not forgotten, once the pipe ends."""
    listed, buf = {}, b""
    while True:
        data = os.read(r, 65536)
        if not data:
            return listed
        buf += data
        *fields, buf = buf.split(b"\0")
        if len(fields) % 2:                   # a key whose value has not arrived yet
            buf = fields.pop() + b"\0" + buf
        for key, value in zip(fields[::2], fields[1::2]):
            name = os.fsdecode(key[1:])
            if key[:1] == b"+":
                listed[name] = os.fsdecode(value)
            else:
                listed.pop(name, None)
