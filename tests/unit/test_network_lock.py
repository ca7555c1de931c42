"""The network lock (crpy.netlock), on the loopback of a network namespace each test makes itself
(unshare -n): while locked, a SYN to a locked listening port gets neither an answer nor a RST,
data on a locked connection does not arrive, nor a datagram (v4) to a locked dual-stack UDP port bound to any address; once lifted,
they go through (TCP retransmits).
Both methods (nftables, iptables), the dump's keep/release at its end, and the janitor lifting
the lock of a crpy SIGKILLed while holding it."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.unit.crhelpers import ROOT


def _in_netns(code, timeout=60):
    """Run python `code` (crpy importable) in a new network namespace; its last stdout line, as JSON."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is missing: no network namespace for the test")
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", "import os; os.system('ip link set lo up')\n" + code],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _need(method):
    tool = "nft" if method == "nftables" else "iptables-restore"
    if not shutil.which(tool):
        pytest.skip(f"{tool} is missing (tools/install-deps.sh installs it)")


SCENARIO = r'''
import json, socket, time, errno
from crpy import netlock
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(8); port = srv.getsockname()[1]
cli = socket.create_connection(("127.0.0.1", port)); acc, _ = srv.accept()
conn = netlock.Connection(socket.AF_INET, "127.0.0.1", acc.getsockname()[1], "127.0.0.1", cli.getsockname()[1])
listener = netlock.Connection(socket.AF_INET, "127.0.0.1", port)
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); udp.bind(("::", 0)); udp.settimeout(0.5)   # dual-stack
udp_sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp_sender.connect(("127.0.0.1", udp.getsockname()[1]))
bound = netlock.Connection(socket.AF_INET6, "::", udp.getsockname()[1], proto="udp")
lock = netlock.lock(4242, [conn, listener, bound], METHOD)
udp_sender.send(b"u1")
try:
    udp_locked = udp.recv(10).decode()
except socket.timeout:
    udp_locked = None
out = {"exists": netlock.backend(METHOD).exists("crpy-4242")}
cli.sendall(b"while locked")
acc.settimeout(0.8)
try:
    out["arrived_locked"] = acc.recv(100).decode()
except socket.timeout:
    out["arrived_locked"] = None
new = socket.socket(); new.setblocking(False)
new.connect_ex(("127.0.0.1", port))
time.sleep(0.8)
out["connect_locked"] = new.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
try:
    new.getpeername(); out["connected_locked"] = True
except OSError:
    out["connected_locked"] = False
lock.release()
out["udp_locked"] = udp_locked
udp_sender.send(b"u2")
out["udp_after"] = udp.recv(10).decode()
out["exists_after"] = netlock.backend(METHOD).exists("crpy-4242")
# what was held back comes at the next retransmission, seconds apart once backed off
acc.settimeout(20)
out["arrived_after"] = acc.recv(100).decode()
new.setblocking(True); new.settimeout(5)
deadline = time.time() + 20
while time.time() < deadline:
    try:
        new.getpeername(); out["connected_after"] = True; break
    except OSError:
        time.sleep(0.05)
else:
    out["connected_after"] = False
print(json.dumps(out))
'''


@pytest.mark.parametrize("method", ["nftables", "iptables"])
def test_locked_connection_and_listener_get_nothing_then_go_through(method):
    _need(method)
    out = _in_netns(f"METHOD = {method!r}\n" + SCENARIO)
    assert out["exists"] and not out["exists_after"]
    assert out["arrived_locked"] is None, "data reached a locked connection"
    assert out["connect_locked"] == 0 and not out["connected_locked"], "a SYN to a locked port got an answer or a RST"
    assert out["arrived_after"] == "while locked", "the data held back was not retransmitted once unlocked"
    assert out["connected_after"], "the SYN held back was not answered once unlocked"
    assert out["udp_locked"] is None and out["udp_after"] == "u2", "a locked UDP port got a datagram, or an unlocked one none"


def test_dump_keeps_the_lock_for_the_restore_which_lifts_it():
    _need("nftables")
    out = _in_netns(r'''
import json, socket
from crpy import netlock
c = netlock.Connection(socket.AF_INET6, "::1", 80, "::1", 4000)
out = {}
for ok, leave in ((True, False), (True, True), (False, False)):
    netlock.begin_dump(777, "nftables").add([c])
    netlock.end_dump(ok, leave)
    out[f"{ok}-{leave}"] = netlock.backend("nftables").exists("crpy-777")
    netlock.release_after_restore(777, "nftables")
netlock.begin_dump(778, "skip").add([c])
netlock.end_dump(True, False)
out["skip"] = netlock.backend("nftables").exists("crpy-778")
print(json.dumps(out))
''')
    assert out == {"True-False": True, "True-True": False, "False-False": False, "skip": False}


@pytest.mark.parametrize("method", ["nftables", "iptables"])
def test_janitor_lifts_the_lock_of_a_killed_crpy(method):
    _need(method)
    out = _in_netns(f"METHOD = {method!r}\n" + r'''
import json, os, signal, socket, subprocess, sys, time
from crpy import netlock
holder = subprocess.Popen([sys.executable, "-c", f"""
import socket, sys, time
from crpy import netlock
netlock.begin_dump(4343, {METHOD!r}).add([netlock.Connection(socket.AF_INET, "127.0.0.1", 1, "127.0.0.1", 2)])
print("locked", flush=True)
time.sleep(60)
"""], stdout=subprocess.PIPE, text=True)
assert holder.stdout.readline().strip() == "locked"
out = {"before": netlock.backend(METHOD).exists("crpy-4343")}
holder.send_signal(signal.SIGKILL); holder.wait()
deadline = time.time() + 10
while time.time() < deadline and netlock.backend(METHOD).exists("crpy-4343"):
    time.sleep(0.05)
out["after"] = netlock.backend(METHOD).exists("crpy-4343")
print(json.dumps(out))
''')
    assert out == {"before": True, "after": False}


def test_normalized_endpoints_as_the_firewall_sees_them():
    import socket

    from crpy import netlock

    C = netlock.Connection
    assert netlock.normalized(C(socket.AF_INET6, "::ffff:127.0.0.1", 5, "::ffff:127.0.0.2", 6)) == \
        [C(socket.AF_INET, "127.0.0.1", 5, "127.0.0.2", 6)]
    assert netlock.normalized(C(socket.AF_INET6, "::", 53, proto="udp")) == \
        [C(socket.AF_INET, None, 53, proto="udp"), C(socket.AF_INET6, None, 53, proto="udp")]
    assert netlock.normalized(C(socket.AF_INET, "0.0.0.0", 80)) == [C(socket.AF_INET, None, 80)]
    assert netlock.normalized(C(socket.AF_INET6, "::1", 80)) == [C(socket.AF_INET6, "::1", 80)]
