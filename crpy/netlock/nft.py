"""nftables backend of the network lock: table `inet crpy-<pid>` with sets of locked 4-tuples
(conn4/conn6) and listening addresses (port4/port6), and input/output chains dropping them."""

import socket

from crpy.netlock.run import tool


def works():
    import shutil

    return shutil.which("nft") is not None and tool(["nft", "list", "tables"], check=False).returncode == 0


def create(name, mark):
    tool(["nft", "-f", "-"], f"""table inet {name} {{
  set conn4 {{ type ipv4_addr . inet_service . ipv4_addr . inet_service; }}
  set conn6 {{ type ipv6_addr . inet_service . ipv6_addr . inet_service; }}
  set port4 {{ type ipv4_addr . inet_service; }}
  set port6 {{ type ipv6_addr . inet_service; }}
  chain input {{
    type filter hook input priority filter; policy accept;
    meta mark {mark:#x} accept
    ip daddr . tcp dport . ip saddr . tcp sport @conn4 drop
    ip6 daddr . tcp dport . ip6 saddr . tcp sport @conn6 drop
    ip daddr . tcp dport @port4 drop
    ip6 daddr . tcp dport @port6 drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    meta mark {mark:#x} accept
    ip saddr . tcp sport . ip daddr . tcp dport @conn4 drop
    ip6 saddr . tcp sport . ip6 daddr . tcp dport @conn6 drop
  }}
}}
""")


def element(c):
    """(set name, element) of a Connection."""
    v = "6" if c.family == socket.AF_INET6 else "4"
    if c.remote_addr is None:
        return "port" + v, f"{c.local_addr} . {c.local_port}"
    return "conn" + v, f"{c.local_addr} . {c.local_port} . {c.remote_addr} . {c.remote_port}"


def add(name, connections):
    lines = [f"add element inet {name} {s} {{ {e} }}" for s, e in map(element, connections)]
    tool(["nft", "-f", "-"], "\n".join(lines) + "\n")


def exists(name):
    return tool(["nft", "list", "table", "inet", name], check=False).returncode == 0


def remove(name):
    tool(["nft", "delete", "table", "inet", name], check=False)
