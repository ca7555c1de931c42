"""nftables backend of the network lock: table `inet crpy-<pid>` with sets of locked connections
(conn4/conn6: address . protocol . port . address . port) and listening or bound addresses
(port4/port6: address . protocol . port; anyport4/anyport6: protocol . port, bound to any
address), and input/output chains dropping their packets."""

import socket

from crpy.netlock.run import tool


def works():
    import shutil

    return shutil.which("nft") is not None and tool(["nft", "list", "tables"], check=False).returncode == 0


def create(name, mark, connections=()):
    """The table, with `connections` already in its sets: one nft call (each costs 15+ ms)."""
    tool(["nft", "-f", "-"], f"""table inet {name} {{
  set conn4 {{ type ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service; }}
  set conn6 {{ type ipv6_addr . inet_proto . inet_service . ipv6_addr . inet_service; }}
  set port4 {{ type ipv4_addr . inet_proto . inet_service; }}
  set port6 {{ type ipv6_addr . inet_proto . inet_service; }}
  set anyport4 {{ type inet_proto . inet_service; }}
  set anyport6 {{ type inet_proto . inet_service; }}
  chain input {{
    type filter hook input priority filter; policy accept;
    meta mark {mark:#x} accept
    ip daddr . meta l4proto . th dport . ip saddr . th sport @conn4 drop
    ip6 daddr . meta l4proto . th dport . ip6 saddr . th sport @conn6 drop
    ip daddr . meta l4proto . th dport @port4 drop
    ip6 daddr . meta l4proto . th dport @port6 drop
    meta nfproto ipv4 meta l4proto . th dport @anyport4 drop
    meta nfproto ipv6 meta l4proto . th dport @anyport6 drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    meta mark {mark:#x} accept
    ip saddr . meta l4proto . th sport . ip daddr . th dport @conn4 drop
    ip6 saddr . meta l4proto . th sport . ip6 daddr . th dport @conn6 drop
  }}
}}
""" + _element_lines(name, connections))


def element(c):
    """(set name, element) of a Connection."""
    v = "6" if c.family == socket.AF_INET6 else "4"
    if c.local_addr is None:
        return "anyport" + v, f"{c.proto} . {c.local_port}"
    if c.remote_addr is None:
        return "port" + v, f"{c.local_addr} . {c.proto} . {c.local_port}"
    return "conn" + v, f"{c.local_addr} . {c.proto} . {c.local_port} . {c.remote_addr} . {c.remote_port}"


def _element_lines(name, connections):
    return "".join(f"add element inet {name} {s} {{ {e} }}\n" for s, e in map(element, connections))


def add(name, connections):
    tool(["nft", "-f", "-"], _element_lines(name, connections))


def exists(name):
    return tool(["nft", "list", "table", "inet", name], check=False).returncode == 0


def remove(name):
    """Delete the table; whether it was there (one nft call: no `exists` first)."""
    return tool(["nft", "delete", "table", "inet", name], check=False).returncode == 0
