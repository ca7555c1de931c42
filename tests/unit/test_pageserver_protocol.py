"""The page server's session (crpy.pageserver.server.Session) against a raw client on a socket
pair: a well-formed stream is kept whole with its crpy-digests; a bad magic, a name that is not an
image, a PATCH beyond the data, a digest that differs and a stream cut short are each refused with
one line sent to the sender, and nothing the session wrote is left."""

import os
import socket
import threading

import pytest

from crpy.images import digest
from crpy.pageserver import protocol as P
from crpy.pageserver.server import Refused, Session


def _serve(tmp_path):
    a, b = socket.socketpair()
    outcome = {}

    def run():
        try:
            Session(a, str(tmp_path)).serve()
            outcome["ok"] = True
        except Refused as e:
            outcome["refused"] = str(e)
        finally:
            a.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return b, t, outcome


def _hello(sock):
    algo = P.default_algo()
    P.send(sock, P.HELLO, P.VERSION, algo.encode())
    assert P.expect_ok(sock, "HELLO") == 0
    return algo


def _send_file(sock, algo, name, data, damage=None):
    h = P.StreamHash(algo)
    h.update(data)
    P.send(sock, P.OPEN, 0, name.encode())
    P.send_data_header(sock, len(data))
    sock.sendall(data if damage is None else damage(data))
    P.send(sock, P.CLOSE, h.value())


def test_a_whole_stream_is_kept_with_digests(tmp_path):
    sock, t, outcome = _serve(tmp_path)
    algo = _hello(sock)
    data = os.urandom(3 * 4096)
    _send_file(sock, algo, "pages-1.img", data)
    P.send(sock, P.FIN)
    assert P.expect_ok(sock, "FIN") == 1
    t.join(10)
    assert outcome == {"ok": True}
    assert (tmp_path / "pages-1.img").read_bytes() == data
    assert digest.damaged_images(str(tmp_path)) == []


def _refused(tmp_path, steps):
    sock, t, outcome = _serve(tmp_path)
    steps(sock, _hello(sock))
    try:
        cmd, _, payload = P.recv(sock)
    except P.StreamError:
        cmd, payload = None, b""
    sock.close()
    t.join(10)
    assert sorted(os.listdir(tmp_path)) == []
    return cmd, payload.decode(), outcome.get("refused", "")


def test_damaged_data_is_refused_and_removed(tmp_path):
    flip = lambda d: bytes([d[0] ^ 1]) + d[1:]   # noqa: E731
    cmd, line, refused = _refused(tmp_path, lambda s, algo: _send_file(s, algo, "pages-1.img", bytes(8192), flip))
    assert cmd == P.ERR and "pages-1.img: damaged on the way" in line and line == refused


def test_a_cut_stream_is_refused_and_removed(tmp_path):
    def steps(sock, algo):
        P.send(sock, P.OPEN, 0, b"pages-1.img")
        P.send_data_header(sock, 8192)
        sock.sendall(bytes(100))
        sock.shutdown(socket.SHUT_WR)

    _, _, refused = _refused(tmp_path, steps)
    assert "truncated" in refused and "pages-1.img" in refused


@pytest.mark.parametrize("name", ["../x.img", "notes.txt", "crpy-digests", ".hidden.img"])
def test_names_that_are_not_images_are_refused(tmp_path, name):
    cmd, line, _ = _refused(tmp_path, lambda s, algo: P.send(s, P.OPEN, 0, name.encode()))
    assert cmd == P.ERR and "refused" in line and name in line


def test_patch_beyond_the_data_and_bad_magic_are_refused(tmp_path):
    def patch(sock, algo):
        P.send(sock, P.OPEN, 0, b"pages-1.img")
        P.send(sock, P.PATCH, 4096, b"xx")

    cmd, line, _ = _refused(tmp_path, patch)
    assert cmd == P.ERR and "PATCH of 2 bytes at 4096 beyond" in line
    cmd, line, _ = _refused(tmp_path, lambda s, algo: s.sendall(b"\0" * P.HEADER.size))
    assert cmd == P.ERR and "not a crpy page server message" in line


# ---------------------------------------------------------------- GET: pages served to lazy-pages

def _serving(tmp_path):
    from crpy.pageserver.serve import PageServing

    a, b = socket.socketpair()
    outcome = {}
    serving = PageServing(str(tmp_path))

    def run():
        outcome["done"] = serving.serve(a)
        serving.close()
        a.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return b, t, outcome


def _get(sock, name, offset, length):
    P.send(sock, P.GET, offset, f"{name}\0{length}".encode())
    cmd, _, b = P.recv_header(sock)
    return cmd, P.recv_exact(sock, b) if b else b""


def test_get_serves_pages_of_the_dump_and_its_parent_until_done(tmp_path):
    data, parent = os.urandom(4 * 4096), os.urandom(2 * 4096)
    (tmp_path / "pre1").mkdir()
    (tmp_path / "pre1" / "pages-1.img").write_bytes(parent)
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "pages-1.img").write_bytes(data)
    os.symlink("../pre1", dump / "parent")
    sock, t, outcome = _serving(dump)
    _hello(sock)
    assert _get(sock, "pages-1.img", 4096, 2 * 4096) == (P.DATA, data[4096:3 * 4096])
    assert _get(sock, "parent/pages-1.img", 4096, 4096) == (P.DATA, parent[4096:])
    assert _get(sock, "../pre1/pages-1.img", 0, 4096) == (P.DATA, parent[:4096])
    P.send(sock, P.DONE)
    assert P.expect_ok(sock, "DONE") == 0
    t.join(10)
    assert outcome == {"done": True}


@pytest.mark.parametrize("name,offset,why", [("../../etc/passwd", 0, "not a pages image"),
                                             ("pagemap-1.img", 0, "not a pages image"),
                                             ("pages-1.img", 4096, "beyond its end")])
def test_get_outside_the_dump_or_beyond_an_image_is_refused_in_one_line(tmp_path, name, offset, why):
    (tmp_path / "pages-1.img").write_bytes(b"\1" * 4096)
    (tmp_path / "pagemap-1.img").write_bytes(b"\1" * 4096)
    sock, t, outcome = _serving(tmp_path)
    _hello(sock)
    cmd, line = _get(sock, name, offset, 4096)
    assert cmd == P.ERR and why in line.decode() and "\n" not in line.decode(), line
    t.join(10)
    assert outcome == {"done": False}


def test_remote_pages_source_fetches_and_a_server_gone_is_source_gone(tmp_path):
    from crpy.lazy.source import RemotePages, SourceGone
    from crpy.pageserver.serve import PageServing, serve_connections
    from crpy.pageserver.server import listen
    import ctypes

    data = os.urandom(8 * 4096)
    (tmp_path / "pages-1.img").write_bytes(data)
    listener, (_, port) = listen("127.0.0.1", 0)
    serving = PageServing(str(tmp_path))
    t = threading.Thread(target=serve_connections, args=(listener, serving), daemon=True)
    t.start()
    src = RemotePages("127.0.0.1", port)
    assert ctypes.string_at(src.address("pages-1.img", 3 * 4096, 4096 * 5), 4096 * 5) == data[3 * 4096:]
    src.done()                         # the server stops serving
    t.join(10)
    listener.close()
    assert not t.is_alive()
    src2 = None
    with pytest.raises(SourceGone) as e:
        src2 = RemotePages("127.0.0.1", port)
    assert src2 is None and f"127.0.0.1:{port}" in str(e.value)
