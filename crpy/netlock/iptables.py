"""iptables backend of the network lock: chains NAME-in (jumped to first from INPUT) and NAME-out
(from OUTPUT) in the filter table of iptables and ip6tables, NAME being crpy-<pid>: a DROP rule in
each for the packets of a locked connection arriving at and leaving the tree, one in NAME-in for a
locked listening or bound address.  Only what reaches or leaves the tree's own sockets is matched,
so a peer on this host gets no EPERM from its own OUTPUT.  Batched through iptables-restore."""

import socket

from crpy.netlock.run import tool

_TOOLS = {socket.AF_INET: "iptables", socket.AF_INET6: "ip6tables"}
_HOOKS = (("INPUT", "-in"), ("OUTPUT", "-out"))


def create(name, mark, connections=()):
    """The chains, then `connections` locked in them."""
    for t in _TOOLS.values():
        lines = [f":{name}{sfx} - [0:0]" for _, sfx in _HOOKS]
        for hook, sfx in _HOOKS:
            lines += [f"-I {hook} -j {name}{sfx}", f"-A {name}{sfx} -m mark --mark {mark:#x} -j ACCEPT"]
        tool([f"{t}-restore", "-w", "--noflush"], "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")
    if connections:
        add(name, connections)


def rules(name, c):
    """The -A lines dropping the packets of Connection c."""
    p = c.proto
    if c.remote_addr is None:
        to = f" -d {c.local_addr}" if c.local_addr is not None else ""
        return [f"-A {name}-in -p {p}{to} --dport {c.local_port} -j DROP"]
    return [f"-A {name}-out -p {p} -s {c.local_addr} --sport {c.local_port} -d {c.remote_addr} --dport {c.remote_port} -j DROP",
            f"-A {name}-in -p {p} -s {c.remote_addr} --sport {c.remote_port} -d {c.local_addr} --dport {c.local_port} -j DROP"]


def add(name, connections):
    for family, t in _TOOLS.items():
        lines = [r for c in connections if c.family == family for r in rules(name, c)]
        if lines:
            tool([f"{t}-restore", "-w", "--noflush"], "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")


def exists(name):
    return any(tool([t, "-w", "-S", name + "-in"], check=False).returncode == 0 for t in _TOOLS.values())


def remove(name):
    for t in _TOOLS.values():
        for hook, sfx in _HOOKS:
            chain = name + sfx
            if tool([t, "-w", "-S", chain], check=False).returncode:
                continue
            while tool([t, "-w", "-D", hook, "-j", chain], check=False).returncode == 0:
                pass
            tool([t, "-w", "-F", chain], check=False)
            tool([t, "-w", "-X", chain], check=False)
