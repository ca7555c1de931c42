"""The lazy-pages guard: a small process, forked by the daemon before any uffd arrives, that holds
a copy of every uffd the daemon serves.

Why: when the last holder of a uffd closes it the kernel drops the registration and a task's
missing page reads as zeros -- a silently different process.  With the guard holding a copy, a
daemon that dies (killed, crashed, its page source gone) leaves the tasks waiting on their faults
instead; the guard sees the daemon's end of their socket close without "done", kills the tasks
(and their descendants) with SIGKILL and says so in one line.  The daemon tells it each uffd it
takes (F), each it finished (C) and that all went well (D).
"""

import json
import os
import signal
import socket
import sys

MSG_MAX = 4096


class Guard:
    """The daemon's handle on its guard."""

    def __init__(self, log_path=None):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 1
            try:
                code = _serve(theirs, os.getppid(), log_path)
            finally:
                os._exit(code)
        theirs.close()
        self.sock, self.pid = ours, pid

    def hold(self, key, pid, fd):
        socket.send_fds(self.sock, [b"F" + json.dumps([key, pid]).encode()], [fd])

    def release(self, key):
        self.sock.send(b"C" + json.dumps(key).encode())

    def done(self):
        """All pages are in: the guard closes what it holds and exits."""
        self.sock.send(b"D")
        self.sock.close()
        os.waitpid(self.pid, 0)


def _serve(sock, daemon_pid, log_path):
    held = {}                          # key -> (pid, fd)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, MSG_MAX, 1)
        except OSError:
            msg, fds = b"", []
        if not msg:
            break
        if msg[:1] == b"F":
            key, pid = json.loads(msg[1:])
            held[key] = (pid, fds[0])
        elif msg[:1] == b"C":
            _, fd = held.pop(json.loads(msg[1:]), (0, -1))
            if fd >= 0:
                os.close(fd)
        elif msg[:1] == b"D":
            for _, fd in held.values():
                os.close(fd)
            return 0
    if not held:
        return 0
    pids = sorted({pid for pid, _ in held.values()})
    killed = _kill_trees(pids)
    _say(log_path, f"crpy lazy-pages: the daemon (pid {daemon_pid}) died before all pages were served: "
                   f"killed the restored task(s) {', '.join(map(str, killed))} rather than let them "
                   f"read zeros or hang")
    return 1


def _kill_trees(pids):
    """SIGKILL each pid and every descendant (a task may have forked since the restore)."""
    killed, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        if pid in killed:
            continue
        todo.extend(_children(pid))
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return sorted(killed)


def _children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out


def _say(log_path, line):
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:
        pass
    if log_path:
        try:
            with open(log_path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass
