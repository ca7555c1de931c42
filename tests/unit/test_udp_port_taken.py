"""A restore whose UDP port another socket took since the dump: one line on stderr naming the
port, a non-zero exit, and nothing left running; the network lock the dump took stays for the
next attempt.  Once the port is free the same images restore, the lock is lifted, and the socket
answers a datagram on its port."""

import shutil
import socket
import subprocess

import pytest

from tests.unit.crhelpers import build_c, crpy, gone, kill_quietly, log_tail, read_text, start_target, wait_for

ECHO = r"""
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET }, from;
    socklen_t len = sizeof(a);
    char buf[64];
    int s = socket(AF_INET, SOCK_DGRAM, 0), out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || getsockname(s, (struct sockaddr *)&a, &len))
        return 1;
    dprintf(out, "ready %d\n", ntohs(a.sin_port));
    for (;;) {
        socklen_t flen = sizeof(from);
        ssize_t n = recvfrom(s, buf, sizeof(buf), 0, (struct sockaddr *)&from, &flen);
        if (n > 0)
            sendto(s, buf, n, 0, (struct sockaddr *)&from, flen);
    }
}
"""


def _locked(pid):
    done = subprocess.run(["nft", "list", "table", "inet", f"crpy-{pid}"], capture_output=True)
    return done.returncode == 0


def test_udp_port_taken_at_restore(tmp_path):
    if not shutil.which("nft"):
        pytest.skip("nft is missing (nftables, tools/install-deps.sh): the network lock is part of the test")
    exe = build_c(tmp_path, "udp_echo", ECHO)
    out = tmp_path / "out"
    proc = start_target([exe, out], lambda: "ready" in read_text(out), "the UDP echo")
    port = int(read_text(out).split()[1])
    images = tmp_path / "img"
    images.mkdir()
    try:
        r = crpy("dump", "-t", proc.pid, "-D", images, "-o", "dump.log", "--network-lock", "nftables")
        assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
        proc.wait()
        assert _locked(proc.pid), "the dump left no network lock on the UDP port"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as thief:
            thief.bind(("127.0.0.1", port))
            r = crpy("restore", "-D", images, "-d", "-o", "restore.log", "--network-lock", "nftables")
            lines = r.stderr.strip().splitlines()
            assert r.returncode != 0 and len(lines) == 1, r.stderr
            assert f"port {port} of 127.0.0.1" in lines[0], lines[0]
            wait_for(lambda: gone(proc.pid), 10, "the failed restore to leave nothing running")
        assert _locked(proc.pid), "a failed restore lifted the lock (the next attempt needs it)"
        r = crpy("restore", "-D", images, "-d", "-o", "restore2.log", "--network-lock", "nftables")
        assert r.returncode == 0, r.stderr + log_tail(images / "restore2.log")
        assert not _locked(proc.pid), "the restore did not lift the network lock"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(5)
            c.sendto(b"ping", ("127.0.0.1", port))
            assert c.recv(10) == b"ping"
    finally:
        kill_quietly(proc.pid)
        subprocess.run(["nft", "delete", "table", "inet", f"crpy-{proc.pid}"], capture_output=True)
