"""A TCP listener dumped and restored, with a client outside the tree (this pytest process).

- A restore whose port another process took since the dump: one line on stderr naming the
  address:port and the pid and fd holding it, a non-zero exit, and nothing left running.  Once
  the port is free again the same images restore and the listener accepts.
- A connection waiting in the backlog, not accepted: the dump refuses it by name; with
  --skip-in-flight it is dropped (its client sees a reset) and the restored listener accepts new
  ones.

The target accepts only after SIGUSR1, each connection greeted with "hi"."""

import os
import signal
import socket

import pytest

from tests.unit.crhelpers import build_c, crpy, gone, kill_quietly, log_tail, read_text, start_target, wait_for

LISTENER = r"""
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
    go = 1;
}

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0), out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 5) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        return 1;
    signal(SIGUSR1, on_usr1);
    dprintf(out, "ready %d\n", ntohs(a.sin_port));
    while (!go)
        pause();
    for (;;) {
        int c = accept(l, NULL, NULL);
        if (c >= 0)
            write(c, "hi", 2), close(c);
    }
}
"""


@pytest.fixture
def listener(tmp_path):
    """(the target's Popen, its port, an empty images dir); the target is killed at the end."""
    exe = build_c(tmp_path, "tcp_listener", LISTENER)
    out = tmp_path / "out"
    proc = start_target([exe, out], lambda: "ready" in read_text(out), "the listener")
    images = tmp_path / "img"
    images.mkdir()
    try:
        yield proc, int(read_text(out).split()[1]), images
    finally:
        kill_quietly(proc.pid)


def test_port_taken_at_restore(listener):
    proc, port, images = listener
    r = crpy("dump", "-t", proc.pid, "-D", images, "-o", "dump.log")
    assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
    proc.wait()
    with socket.socket() as thief:
        thief.bind(("127.0.0.1", port))
        thief.listen(1)
        r = crpy("restore", "-D", images, "-d", "-o", "restore.log")
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1, r.stderr
        assert f"127.0.0.1:{port}" in lines[0] and f"pid {os.getpid()} fd {thief.fileno()}" in lines[0], lines[0]
        wait_for(lambda: gone(proc.pid), 10, "the failed restore to leave nothing running")
    r = crpy("restore", "-D", images, "-d", "-o", "restore2.log")
    assert r.returncode == 0, r.stderr + log_tail(images / "restore2.log")
    os.kill(proc.pid, signal.SIGUSR1)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        assert c.recv(2) == b"hi"


def test_waiting_connection_refused_or_skipped_in_flight(listener):
    proc, port, images = listener
    with socket.create_connection(("127.0.0.1", port), timeout=5) as waiting:
        r = crpy("dump", "-t", proc.pid, "-D", images, "-o", "dump.log")
        lines = r.stderr.strip().splitlines()
        assert r.returncode != 0 and len(lines) == 1, r.stderr
        assert f"127.0.0.1:{port} with 1 connection(s) waiting" in lines[0] and "--skip-in-flight" in lines[0]
        assert proc.poll() is None
        r = crpy("dump", "-t", proc.pid, "-D", images, "-o", "dump.log", "--skip-in-flight")
        assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
        proc.wait()
        r = crpy("restore", "-D", images, "-d", "-o", "restore.log")
        assert r.returncode == 0, r.stderr + log_tail(images / "restore.log")
        os.kill(proc.pid, signal.SIGUSR1)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            assert c.recv(2) == b"hi"
        try:
            dropped = waiting.recv(2)
        except ConnectionResetError:
            dropped = b""
        assert dropped == b"", "the connection waiting at the dump was accepted after the restore"
