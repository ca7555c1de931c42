"""The process that keeps pre-dump memory tracking alive between crpy commands.

Write tracking lives as long as some process holds the task's userfaultfd (closing the last fd
drops every registration).  Keeping it in the task itself would add an fd the task can see and
that a dump would have to save, so a small holder process started by the first pre-dump keeps
the fds instead, with the round's state (token, generation), on an abstract unix socket named
after the tree's root (pid and start time).  Protocol, one SOCK_SEQPACKET connection per crpy
command:
  "lend"             -> reply state JSON + the fds; the holder closes its copies at once, so a
                        crpy command killed mid-round takes the tracking with it (untracked);
  "keep" JSON + fds  -> the holder keeps them (the end of a successful round);
the connection closing while the holder has lent its fds (or holds nothing) ends the holder.
It also ends when every tracked task is gone.  Run as `python -m crpy.dump.memtrack_holder NAME` (NAME without the leading NUL).
"""

import json
import os
import select
import socket
import sys

MAX_FDS = 253
IDLE_START = 30.0             # seconds to wait for the first "keep"


def socket_name(pid):
    """Abstract socket name of the holder of the tree rooted at pid (this incarnation of it)."""
    with open(f"/proc/{pid}/stat") as f:
        starttime = f.read().rsplit(")", 1)[1].split()[19]
    return f"\0crpy-memtrack-{pid}-{starttime}"


def _recv(conn):
    msg, fds, _, _ = socket.recv_fds(conn, 1 << 16, MAX_FDS)
    return msg, fds


def _serve(srv):
    state, fds, pidfds = None, [], []
    srv.settimeout(IDLE_START)
    while True:
        if state is not None:
            ready, _, _ = select.select([srv] + pidfds, [], [])
            for p in ready:
                if p is not srv:
                    pidfds.remove(p)
                    os.close(p)
            if not pidfds:
                return                            # every tracked task is gone
            if srv not in ready:
                continue
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            return
        with conn:
            msg, got = _recv(conn)
            if msg == b"lend" and state is not None:
                reply = dict(state, holder=os.getpid())      # crpy waits for it to end, if it ends
                socket.send_fds(conn, [json.dumps(reply).encode()], fds)
                for fd in fds + pidfds:
                    os.close(fd)
                state, fds, pidfds = None, [], []
                msg, got = _recv(conn)            # the end of that round: keep, or EOF
            if msg.startswith(b"keep "):
                for fd in fds + pidfds:
                    os.close(fd)
                state, fds = json.loads(msg[5:]), got
                pidfds = [os.pidfd_open(p) for p in state["pids"] if os.path.exists(f"/proc/{p}")]
                conn.send(b"ok")
                continue
            for fd in got:
                os.close(fd)
            if state is None:
                return                            # lent and not given back: tracking is over


def main(argv):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    srv.bind("\0" + argv[0])                   # abstract: given without its leading NUL
    srv.listen(4)
    os.write(1, b"ready\n")
    os.close(1)
    _serve(srv)


if __name__ == "__main__":
    main(sys.argv[1:])
