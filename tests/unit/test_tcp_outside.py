"""An established TCP connection to a peer OUTSIDE the dumped tree (the peer is this pytest process).

The target connects to our listener and echoes every byte back in upper case.  It is dumped
with --tcp-established and killed, restored, and the same connection must carry data both ways
again: while the target was gone our end saw neither FIN nor RST (the dump closed the socket in
repair mode); bytes we sent while it was stopped wait in its receive queue through the dump and
are echoed after the restore, each byte exactly once, in order.  (Bytes sent while the target
is gone would draw a RST from the kernel: keeping such packets out is the network lock's job,
not tested here.)  A control restores with --tcp-close: then the connection is dead, and
the test's checks see it (so they can fail).
"""

import os
import signal
import socket

import pytest

from crpy.images import framing
from crpy.kernel import proc as kproc
from tests.unit.crhelpers import build_c, crpy, gone, kill_quietly, log_tail, read_text, start_target, wait_for

ECHO_UPPER = r"""
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    int s = socket(AF_INET, SOCK_STREAM, 0), out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char buf[4096];

    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof(a)))
        return 1;
    write(out, "ready\n", 6);
    for (;;) {
        ssize_t n = read(s, buf, sizeof(buf));
        if (n <= 0) {
            dprintf(out, "read %zd: %s\n", n, n ? strerror(errno) : "EOF");
            return 2;
        }
        for (ssize_t i = 0; i < n; i++)
            buf[i] = toupper((unsigned char)buf[i]);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(s, buf + off, n - off);
            if (w <= 0) {
                dprintf(out, "write: %s\n", strerror(errno));
                return 3;
            }
            off += w;
        }
    }
}
"""


def _recv_exactly(conn, n, timeout=10.0):
    """n bytes from conn, or fewer if it ends or nothing comes for `timeout` seconds."""
    conn.settimeout(timeout)
    got = b""
    try:
        while len(got) < n:
            chunk = conn.recv(n - len(got))
            if not chunk:
                break
            got += chunk
    except (socket.timeout, ConnectionError):
        pass
    return got


def _stop(proc):
    """SIGSTOP the target and wait until it is stopped: a task woken by the signal but not yet
    stopped would still read (and echo) what is sent next."""
    os.kill(proc.pid, signal.SIGSTOP)
    wait_for(lambda: kproc.stat(proc.pid).state == "T", what="the target stopped")


def _queued(conn, n, state="01"):
    """Wait until the target's end of conn holds n unread bytes (and is in `state`, hex as in
    /proc/net/tcp: 01 ESTABLISHED, 08 CLOSE_WAIT): over loopback the bytes sent land in its queue
    from a softirq, which a loaded machine can run late."""
    ends = (f"0100007F:{conn.getpeername()[1]:04X}", f"0100007F:{conn.getsockname()[1]:04X}")

    def target_end():
        for line in read_text("/proc/net/tcp").splitlines()[1:]:
            f = line.split()
            if (f[1], f[2]) == ends:
                return f[3] == state and int(f[4].split(":")[1], 16) == n
        return False

    wait_for(target_end, what=f"{n} bytes in the target's receive queue")


def _dump(proc, tmp_path, *options):
    """`crpy dump` of the target into tmp_path/img with these options; the target is gone (reaped)
    after.  Returns the images directory."""
    images = tmp_path / "img"
    images.mkdir()
    r = crpy("dump", "-t", proc.pid, "-D", images, "-o", "dump.log", *options)
    assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
    proc.wait()
    return images


def _restore(images, proc, pids, *options):
    """`crpy restore -d` of the target under its pid, which joins pids (killed at the end)."""
    r = crpy("restore", "-D", images, "-d", "-o", "restore.log", *options)
    assert r.returncode == 0, r.stderr + log_tail(images / "restore.log")
    pids.append(proc.pid)


@pytest.fixture
def echo_target(tmp_path):
    exe = build_c(tmp_path, "echo_upper", ECHO_UPPER)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        out = tmp_path / "echo.out"
        proc = start_target([exe, listener.getsockname()[1], out], lambda: "ready" in read_text(out),
                            "the echo target to connect")
        conn, _ = listener.accept()
    pids = [proc.pid]
    try:
        yield conn, proc, pids, out
    finally:
        conn.close()
        for pid in pids:
            kill_quietly(pid)
        proc.wait()


@pytest.mark.parametrize("restore_mode", ["kept", "tcp-close"])
def test_connection_to_a_peer_outside_survives(echo_target, tmp_path, restore_mode):
    conn, proc, pids, out = echo_target
    conn.sendall(b"before the dump\n")
    assert _recv_exactly(conn, 16) == b"BEFORE THE DUMP\n"
    _stop(proc)                                 # stopped: these bytes wait in its receive queue
    conn.sendall(b"queued at the dump\n")
    _queued(conn, 19)
    images = _dump(proc, tmp_path, "--tcp-established")
    assert gone(proc.pid)
    conn.setblocking(False)                     # the target is gone: no FIN, no RST came
    with pytest.raises(BlockingIOError):
        conn.recv(100)
    extra = ["--tcp-close"] if restore_mode == "tcp-close" else []
    _restore(images, proc, pids, *extra)        # restored under the same pid, still stopped
    os.kill(proc.pid, signal.SIGCONT)
    want = b"QUEUED AT THE DUMP\n"
    got = _recv_exactly(conn, len(want), timeout=10.0 if restore_mode == "kept" else 3.0)
    if restore_mode == "tcp-close":
        assert got != want, "with --tcp-close the connection must be dead, yet it echoed"
        return
    assert got == want, f"echoed {got!r}, wanted {want!r}; target says {read_text(out)!r}"
    conn.sendall(b"after the restore\n")
    assert _recv_exactly(conn, 18) == b"AFTER THE RESTORE\n"
    conn.setblocking(False)
    with pytest.raises(BlockingIOError):
        conn.recv(1)                            # each byte exactly once
    assert read_text(out) == "ready\n", f"the target says {read_text(out)!r}"


def _nft(*args):
    import subprocess

    return subprocess.run(["nft", *args], capture_output=True, text=True, timeout=30)


def test_sent_but_unacknowledged_data_is_sent_again(echo_target, tmp_path):
    """Bytes the target sent that the peer never acknowledged (an nftables rule drops our ACKs
    for a moment) stay in its send queue through the dump as sent-not-acked (the tcp-stream image
    shows them) and are retransmitted after the restore: the peer reads them once, the
    connection goes on."""
    import shutil

    if shutil.which("nft") is None:
        pytest.skip("nft (nftables) is missing: this test drops the peer's ACKs with it")
    conn, proc, pids, out = echo_target
    table = f"crpy_test_unacked_{os.getpid()}"
    ours, theirs = conn.getsockname()[1], conn.getpeername()[1]
    _stop(proc)
    conn.sendall(b"echo me\n")                  # in its receive queue, acknowledged
    _queued(conn, 8)
    r = _nft("add", "table", "inet", table)
    if r.returncode:
        pytest.skip(f"nftables refuses a table here: {r.stderr.strip()}")
    try:
        assert _nft("add", "chain", "inet", table, "out", "{ type filter hook output priority 0; }").returncode == 0
        assert _nft("add", "rule", "inet", table, "out", "tcp", "sport", str(ours), "tcp", "dport", str(theirs),
                    "drop").returncode == 0
        os.kill(proc.pid, signal.SIGCONT)
        assert _recv_exactly(conn, 8) == b"ECHO ME\n"   # received; our ACK for it is dropped
        images = _dump(proc, tmp_path, "--tcp-established")
    finally:
        _nft("delete", "table", "inet", table)
    streams = [p for p in os.listdir(images) if p.startswith("tcp-stream-")]
    (stream, _), = framing.read_payload_image(str(images / streams[0]), "tcp_stream")
    assert stream.outq_len - stream.unsq_len == 8, f"not sent-but-unacknowledged at the dump: {stream}"
    _restore(images, proc, pids)
    conn.sendall(b"after the restore\n")
    assert _recv_exactly(conn, 18) == b"AFTER THE RESTORE\n"   # not the echo a second time
    conn.setblocking(False)
    with pytest.raises(BlockingIOError):
        conn.recv(1)
    assert read_text(out) == "ready\n", f"the target says {read_text(out)!r}"


def test_half_closed_by_the_peer_outside(echo_target, tmp_path):
    """The peer sent data and shut down its side while the target was stopped: the target's end is
    in CLOSE_WAIT with the data unread when it is dumped.  Restored, it reads the data, then end-of-
    file (the peer's FIN made again), echoes, and its close reaches the peer as a FIN."""
    conn, proc, pids, out = echo_target
    _stop(proc)
    conn.sendall(b"last words\n")
    conn.shutdown(socket.SHUT_WR)
    _queued(conn, 11 + 1, state="08")             # rx_queue counts the FIN's sequence number too
    images = _dump(proc, tmp_path, "--tcp-established")
    files = framing.read_image(str(images / "files.img"), "files")
    assert [e.isk.state for e in files if e.HasField("isk")] == [8]      # CLOSE_WAIT
    _restore(images, proc, pids)
    os.kill(proc.pid, signal.SIGCONT)
    assert _recv_exactly(conn, 11) == b"LAST WORDS\n"
    conn.settimeout(10)
    assert conn.recv(1) == b"", "the target's close did not come as a FIN"     # (a RST raises)
    wait_for(lambda: "read 0: EOF" in read_text(out), 10, "the target to read end-of-file")


def test_dump_tcp_close_saves_no_connection(echo_target, tmp_path):
    """criu's dump --tcp-close: accepted without --tcp-established, the connection's stream is not
    saved (no tcp-stream image, inventory.tcp_close) nor locked, so its peer sees it end once the
    tree is killed; a restore without --tcp-close is refused in one line, nothing left running; with
    it the target's socket is back closed (its blocked read gets ENOTCONN)."""
    conn, proc, pids, out = echo_target
    images = _dump(proc, tmp_path, "--tcp-close")
    assert not [p for p in os.listdir(images) if p.startswith("tcp-stream-")]
    assert framing.read_one(str(images / "inventory.img"), "inventory").tcp_close
    import shutil

    if shutil.which("nft"):                     # (without nft the lock would be iptables': none either way)
        assert f"crpy-{proc.pid}" not in _nft("list", "tables").stdout, "a connection not saved was locked"
    assert _recv_exactly(conn, 1, timeout=5.0) == b"", "the peer did not see the connection end"
    r = crpy("restore", "-D", images, "-d")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "--tcp-close" in r.stderr, r.stderr
    assert gone(proc.pid)
    _restore(images, proc, pids, "--tcp-close")
    wait_for(lambda: "read" in read_text(out), what="the restored target's read to fail")
    assert "Transport endpoint is not connected" in read_text(out), read_text(out)
