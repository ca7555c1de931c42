"""Servers no one here wrote, from Debian's packages (`make deps`), through crpy: memcached
(libevent, worker threads, epoll, eventfds and pipes, a listening TCP socket) and redis-server
(its event loop, background threads, a listening socket and a client's established connection).

Each server is given data, dumped, checked gone, restored, and asked for the data again; what it
answers is compared with what the same server answers in an uninterrupted run.  With
--tcp-established the client's connection stays open across the dump and restore: the same
connection (a redis-cli on a terminal, a Python socket for memcached), outside the dumped tree,
gets its answers afterwards."""

import os
import pty
import random
import shutil
import socket
import subprocess
import time

import pytest

from tests.unit.crhelpers import crpy, gone, kill_quietly, log_tail, start_target, wait_for

KEYS = 200


def _free_port():
    """A port free now and below the ephemeral range, which the kernel hands to connect() and
    bind(0): none of those can take it before the server binds it (a bind(0) port could be)."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    below = range(max(low - 8000, 1024), low)
    for port in random.sample(below, min(64, len(below))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port below {low}")


def _need(binary):
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (make deps installs it)")


def _connect(port):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return None


def _dump_restore(pid, images, *extra):
    """Dump pid (which must then be gone) and restore it detached, both with logs in images.
    The server is our child until its first dump: reaping it there frees its pid."""
    r = crpy("dump", "-t", pid, "-D", images, "-v4", "-o", "dump.log", *extra)
    assert r.returncode == 0, r.stderr + log_tail(images / "dump.log")
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    wait_for(lambda: gone(pid), 10, f"pid {pid} gone after the dump")
    r = crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log", *extra)
    assert r.returncode == 0, r.stderr + log_tail(images / "restore.log")


# ---- memcached ---------------------------------------------------------------------------------

def _mc_command(sk, line, until=b"\r\n"):
    sk.sendall(line)
    data = b""
    while not data.endswith(until):
        chunk = sk.recv(65536)
        assert chunk, f"memcached closed the connection after {line[:40]!r}"
        data += chunk
    return data


def _mc_fill(sk):
    for i in range(KEYS):
        value = (f"value-{i}-" * (i % 50 + 1)).encode()
        assert _mc_command(sk, b"set key%d %d 0 %d\r\n%s\r\n" % (i, i, len(value), value)) == b"STORED\r\n"


def _mc_read_all(sk):
    keys = b" ".join(b"key%d" % i for i in range(KEYS))
    return _mc_command(sk, b"get " + keys + b"\r\n", until=b"END\r\n")


def _start_memcached(port):
    _need("memcached")
    # -U 0: no UDP listener; -t 4: four libevent worker threads; -u root: it refuses root otherwise
    return start_target(["memcached", "-l", "127.0.0.1", "-p", port, "-U", "0", "-t", "4", "-u", "root"],
                        lambda: _probe(port), "memcached to listen")


def _probe(port):
    sk = _connect(port)
    if sk:
        sk.close()
    return sk is not None


@pytest.fixture
def memcached_reference():
    """What an uninterrupted memcached answers to the test's requests."""
    port = _free_port()
    p = _start_memcached(port)
    try:
        with _connect(port) as sk:
            _mc_fill(sk)
            return _mc_read_all(sk)
    finally:
        kill_quietly(p.pid)
        p.wait()


@pytest.mark.parametrize("iters", [1, 3])
def test_memcached_keeps_its_data(iters, tmp_path, memcached_reference):
    port = _free_port()
    p = _start_memcached(port)
    pid = p.pid
    try:
        with _connect(port) as sk:
            _mc_fill(sk)
        for n in range(iters):
            _dump_restore(pid, tmp_path / f"img{n}")
        with _connect(port) as sk:
            assert _mc_read_all(sk) == memcached_reference
            assert _mc_command(sk, b"set after 0 0 2\r\nok\r\n") == b"STORED\r\n"
    finally:
        kill_quietly(pid)


def test_memcached_client_connection_stays_open(tmp_path, memcached_reference):
    """--tcp-established: the client's socket, outside the tree, is the same after the restore."""
    port = _free_port()
    p = _start_memcached(port)
    pid = p.pid
    try:
        sk = _connect(port)
        _mc_fill(sk)
        _dump_restore(pid, tmp_path / "img", "--tcp-established")
        assert _mc_read_all(sk) == memcached_reference
        sk.close()
    finally:
        kill_quietly(pid)


# ---- redis -------------------------------------------------------------------------------------

class RedisCli:
    """redis-cli on a pseudo-terminal of the test's (it is interactive there, one connection for
    all its commands); the test types commands and reads the answers."""

    def __init__(self, port):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["redis-cli", "-p", str(port)], stdin=slave, stdout=slave,
                                     stderr=slave, start_new_session=True, env={**os.environ, "TERM": "dumb"})
        os.close(slave)
        self.buf = b""
        self.expect(b"> ")

    def expect(self, what, timeout=20):
        end = time.monotonic() + timeout
        while what not in self.buf:
            assert time.monotonic() < end, f"redis-cli never printed {what!r}: {self.buf[-300:]!r}"
            try:
                self.buf += os.read(self.master, 4096)
            except OSError:
                break
        head, _, self.buf = self.buf.partition(what)
        return head

    def command(self, line):
        """The answer to one command, as redis-cli prints it."""
        os.write(self.master, line.encode() + b"\r")
        self.expect(line.encode())                # the echo of what was typed
        return self.expect(b"> ").decode(errors="replace").strip().rsplit("\n", 1)[0].strip()

    def close(self):
        kill_quietly(self.proc.pid)
        self.proc.wait()
        os.close(self.master)


def _start_redis(port, tmp_path):
    _need("redis-server")
    _need("redis-cli")
    return start_target(["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
                         "--appendonly", "no", "--daemonize", "no", "--dir", tmp_path],
                        lambda: _probe(port), "redis-server to listen")


def _redis_session(cli):
    """The same commands in every run; their answers."""
    answers = []
    for i in range(20):
        answers.append(cli.command(f"SET key{i} value{i * i}"))
    answers.append(cli.command("RPUSH list a b c d"))
    answers.append(cli.command("HSET h f1 v1 f2 v2"))
    return answers


def _redis_reads(cli):
    return [cli.command("GET key7"), cli.command("LRANGE list 0 -1"), cli.command("HGETALL h"),
            cli.command("DBSIZE")]


@pytest.fixture
def redis_reference(tmp_path):
    port = _free_port()
    p = _start_redis(port, tmp_path)
    cli = RedisCli(port)
    try:
        return _redis_session(cli), _redis_reads(cli)
    finally:
        cli.close()
        kill_quietly(p.pid)
        p.wait()


def test_redis_cli_connection_answers_after_restore(tmp_path, redis_reference):
    port = _free_port()
    p = _start_redis(port, tmp_path)
    pid = p.pid
    cli = RedisCli(port)
    try:
        assert _redis_session(cli) == redis_reference[0]
        client_port = _redis_client_port(cli)
        _dump_restore(pid, tmp_path / "img", "--tcp-established")
        assert _redis_reads(cli) == redis_reference[1]
        # the same connection: the server still sees the client on the port it had before
        assert _redis_client_port(cli) == client_port
    finally:
        cli.close()
        kill_quietly(pid)


def _redis_client_port(cli):
    """The client's own port, from CLIENT INFO (addr=127.0.0.1:PORT)."""
    info = cli.command("CLIENT INFO")
    addr = next(w for w in info.split() if w.startswith("addr="))
    return int(addr.rsplit(":", 1)[1])


def test_redis_restores_without_the_client_when_its_connection_is_not_kept(tmp_path, redis_reference):
    """Without --tcp-established the dump of a server with a client connected refuses in one line
    and the server keeps running (then the client leaves, and the dump goes through)."""
    port = _free_port()
    p = _start_redis(port, tmp_path)
    pid = p.pid
    cli = RedisCli(port)
    try:
        _redis_session(cli)
        r = crpy("dump", "-t", pid, "-D", tmp_path / "refused")
        assert r.returncode != 0 and r.stderr.count("\n") == 1 and "--tcp-established" in r.stderr, r.stderr
        assert cli.command("GET key7") == redis_reference[1][0]
        cli.close()
        wait_for(lambda: not _connections_to(port), 10, "redis to close the client's connection")
        _dump_restore(pid, tmp_path / "img")
        cli = RedisCli(port)
        assert _redis_reads(cli) == redis_reference[1]
    finally:
        cli.close()
        kill_quietly(pid)


def _connections_to(port):
    """Sockets of any state but LISTEN (0A) and TIME_WAIT (06) whose local port is port, from
    /proc/net/tcp: the server's ends of its connections."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [r for r in rows if int(r[1].rsplit(":", 1)[1], 16) == port and r[3] not in ("0A", "06")]


# ---- a Python asyncio echo server, streamed through during the dump ------------------------------

class Streamer:
    """A client outside the tree: one thread sends a numbered byte stream as fast as the server
    takes it, another reads the echo and checks every byte is the next one expected (no byte
    lost, duplicated or changed)."""

    def __init__(self, port):
        import threading
        self.sk = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sent = self.received = 0
        self.error, self.stop = None, False
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pattern(offset, n):
        return bytes((offset + i) * 7 % 251 for i in range(n))

    def _send(self):
        try:
            while not self.stop:
                chunk = self._pattern(self.sent, 4096)
                self.sk.sendall(chunk)
                self.sent += len(chunk)
                time.sleep(0.001)
        except OSError as e:
            self.error = self.error or f"send after {self.sent} bytes: {e}"

    def _receive(self):
        try:
            while self.received < self.sent or not self.stop:
                data = self.sk.recv(65536)
                if not data:
                    self.error = self.error or f"EOF after {self.received} bytes"
                    return
                if data != self._pattern(self.received, len(data)):
                    self.error = self.error or f"echo differs at byte {self.received}"
                    return
                self.received += len(data)
        except OSError as e:
            self.error = self.error or f"receive after {self.received} bytes: {e}"

    def finish(self):
        self.stop = True
        self.threads[0].join(30)
        wait_for(lambda: self.error or self.received == self.sent, 60, "the last echoed bytes")
        self.sk.close()
        return self.error


def test_asyncio_echo_streams_through_the_dump(tmp_path):
    import sys
    from pathlib import Path
    port = _free_port()
    out = tmp_path / "out"
    script = Path(__file__).with_name("pytargets") / "asyncio_echo.py"
    p = start_target([sys.executable, script, out, port], lambda: "ready" in (out.read_text() if out.exists() else ""),
                     "the echo server to listen")
    pid = p.pid
    client = Streamer(port)
    try:
        wait_for(lambda: client.received > 100_000 or client.error, 30, "the stream to flow")
        _dump_restore(pid, tmp_path / "img", "--tcp-established")
        at_restore = client.received
        wait_for(lambda: client.received > at_restore + 100_000 or client.error, 30, "the stream to flow again")
        assert client.finish() is None
        assert client.sent == client.received > 200_000
    finally:
        client.stop = True
        kill_quietly(pid)
