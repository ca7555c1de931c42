"""Test helpers for crpy's page server and migration: a `crpy page-server` or `crpy receive`
started in the background (its port read from its "listening on" line), a TCP relay that damages
or cuts the stream on purpose, and a network namespace with a veth link (a second "host")."""

import os
import select
import socket
import subprocess
import threading
import uuid

from tests.zdtm import harness


class Server:
    """`crpy page-server` (or `crpy receive`) in the background; .port once it listens."""

    def __init__(self, *args, prefix=(), env=None):
        self.proc = subprocess.Popen(list(prefix) + harness.crpy_command(*args), cwd=harness.REPO,
                                     env=harness.crpy_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise harness.HarnessError(f"crpy {args[0]} did not start: {line!r} {err.strip()}")
        self.port = int(line.rsplit(":", 1)[1])

    def wait(self, timeout=60):
        """(exit code, stderr) once it ends."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            return None, err
        return self.proc.returncode, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class Relay:
    """127.0.0.1:PORT -> host:target, one connection.  flip_at: the byte at that offset of
    the sender's stream is inverted on the way; cut_at: both sides are closed after that many
    bytes of the sender's stream."""

    def __init__(self, target_port, flip_at=None, cut_at=None, host="127.0.0.1"):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target, self.host, self.flip_at, self.cut_at = target_port, host, flip_at, cut_at
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        a, _ = self.listener.accept()
        b = socket.create_connection((self.host, self.target))
        try:
            self._relay(a, b)
        except OSError:               # either side went away: so does the relay
            pass
        finally:
            a.close()
            b.close()
            self.listener.close()

    def _relay(self, a, b):
        passed = 0
        while True:
            ready, _, _ = select.select([a, b], [], [], 30)
            if not ready:
                return
            for s in ready:
                data = s.recv(1 << 16)
                if not data:
                    return
                if s is a:
                    if self.cut_at is not None and passed + len(data) >= self.cut_at:
                        b.sendall(data[:self.cut_at - passed])
                        return
                    if self.flip_at is not None and passed <= self.flip_at < passed + len(data):
                        i = self.flip_at - passed
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                    passed += len(data)
                    b.sendall(data)
                else:
                    a.sendall(data)


def _ip(*args, check=True):
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise harness.HarnessError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


class NetNs:
    """A network namespace of the test's own, linked to this one by a veth pair with addresses the
    test chooses (10.R.R.1 here, 10.R.R.2 there, R random); removed by close()."""

    def __init__(self):
        tag = uuid.uuid4().hex[:6]
        self.name, self.here_if, self.there_if = f"crpy-mig-{tag}", f"cm{tag}a", f"cm{tag}b"
        r = int(tag[:4], 16)
        net = f"10.{200 + r % 50}.{(r >> 8) % 250 + 1}"
        self.here, self.there = f"{net}.1", f"{net}.2"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.here_if, "type", "veth", "peer", "name", self.there_if)
            _ip("link", "set", self.there_if, "netns", self.name)
            _ip("addr", "add", f"{self.here}/30", "dev", self.here_if)
            _ip("link", "set", self.here_if, "up")
            _ip("-n", self.name, "addr", "add", f"{self.there}/30", "dev", self.there_if)
            _ip("-n", self.name, "link", "set", self.there_if, "up")
            _ip("-n", self.name, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def prefix(self):
        """The command prefix that runs a program in the namespace."""
        return ["ip", "netns", "exec", self.name]

    def close(self):
        _ip("link", "del", self.here_if, check=False)
        _ip("netns", "del", self.name, check=False)


def start_test(tmp_path, name, env=None):
    """zdtm test NAME started in tmp_path/work (the caller kills it at the end)."""
    work = tmp_path / "work"
    work.mkdir()
    test = harness.ZdtmTest(name, str(work), env=env)
    test.start()
    return test


def page_server_args(port, address="127.0.0.1"):
    return ["--page-server", "--address", address, "--port", str(port)]


def listing(path):
    return sorted(os.listdir(path))


def run_migrate(pid, to, work, rounds, env=None, timeout=300, pids=None, extra=()):
    """`crpy migrate -t PID --to TO` with exactly `rounds` pre-copy rounds; reaps the source tree
    (pids, default pid) as soon as crpy kills it (as a parent would: the restore needs the pids
    free); returns a
    CompletedProcess.  The output goes through files: nothing can block while we poll."""
    import tempfile
    import time

    argv = harness.crpy_command("migrate", "-t", pid, "--to", to, "--max-rounds", rounds, "--min-rounds",
                                rounds, "-D", work, "-v4", "-o", "migrate.log", *extra)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(argv, cwd=harness.REPO, env=harness.crpy_env(env), stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            for p in pids or [pid]:
                harness._try_reap(p)
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise harness.HarnessError(f"crpy migrate did not finish in {timeout} s")
            time.sleep(0.005)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, proc.returncode, out.read(), err.read())


def tracked(pid):
    """Does a pre-dump memory-tracking holder still exist for pid (crpy.dump.memtrack_holder)?"""
    with open("/proc/net/unix") as f:
        return f"@crpy-memtrack-{pid}-" in f.read()


def migrate_cycle(test, images_dir, rounds, lazy=False):
    """The harness's --migrate N: test's tree migrated by `crpy migrate` with N pre-copy rounds to
    `crpy receive` in a network namespace made for it (removed after); the restored root must be
    the same pid, in that namespace.  lazy (--migrate N --lazy): `crpy migrate --lazy`, which
    returns once the destination has every page."""
    ns, server = NetNs(), None
    try:
        dst = os.path.join(images_dir, "dst")
        os.mkdir(dst)
        server = Server("receive", "--listen", "0", "--address", ns.there, "-D", dst, "-v4", "-o",
                        os.path.join(images_dir, "receive.log"), prefix=ns.prefix())
        proc = run_migrate(test.pid, f"{ns.there}:{server.port}", os.path.join(images_dir, "src"), rounds,
                           pids=test.tree or [test.pid],
                           extra=test.opts.get("dump", []) + (["--lazy"] if lazy else []))
        rc, err = server.wait()
        if proc.returncode != 0:
            raise harness.HarnessError(f"crpy migrate exited with {proc.returncode}: {proc.stderr.strip()}")
        if rc != 0:
            raise harness.HarnessError(f"crpy receive exited with {rc}: {err.strip()}")
        if f"restored as pid {test.pid};" not in proc.stdout:
            raise harness.HarnessError(f"crpy migrate did not restore pid {test.pid}: {proc.stdout.strip()}")
        if os.readlink(f"/proc/{test.pid}/ns/net") != _netns_id(ns.name):
            raise harness.HarnessError(f"pid {test.pid} is not in the destination's namespace")
    finally:
        if server is not None:
            server.kill()
        ns.close()


def _netns_id(name):
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        st = os.fstat(fd)
        return f"net:[{st.st_ino}]"
    finally:
        os.close(fd)
