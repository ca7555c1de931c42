"""iptables backend of the network lock: chain crpy-<pid> in the filter table of iptables and
ip6tables, jumped to first from INPUT and OUTPUT, with a DROP rule per direction of each locked
connection (and one for each locked listening address).  Batched through iptables-restore."""

import socket

from crpy.netlock.run import tool

_TOOLS = {socket.AF_INET: "iptables", socket.AF_INET6: "ip6tables"}


def create(name, mark):
    for t in _TOOLS.values():
        tool([f"{t}-restore", "-w", "--noflush"], f"""*filter
:{name} - [0:0]
-I INPUT -j {name}
-I OUTPUT -j {name}
-A {name} -m mark --mark {mark:#x} -j ACCEPT
COMMIT
""")


def rules(name, c):
    """The -A lines dropping the packets of Connection c."""
    if c.remote_addr is None:
        return [f"-A {name} -p tcp -d {c.local_addr} --dport {c.local_port} -j DROP"]
    return [f"-A {name} -p tcp -s {c.local_addr} --sport {c.local_port} -d {c.remote_addr} --dport {c.remote_port} -j DROP",
            f"-A {name} -p tcp -s {c.remote_addr} --sport {c.remote_port} -d {c.local_addr} --dport {c.local_port} -j DROP"]


def add(name, connections):
    for family, t in _TOOLS.items():
        lines = [r for c in connections if c.family == family for r in rules(name, c)]
        if lines:
            tool([f"{t}-restore", "-w", "--noflush"], "*filter\n" + "\n".join(lines) + "\nCOMMIT\n")


def exists(name):
    return any(tool([t, "-w", "-S", name], check=False).returncode == 0 for t in _TOOLS.values())


def remove(name):
    for t in _TOOLS.values():
        if tool([t, "-w", "-S", name], check=False).returncode == 0:
            for chain in ("INPUT", "OUTPUT"):
                while tool([t, "-w", "-D", chain, "-j", name], check=False).returncode == 0:
                    pass
            tool([t, "-w", "-F", name], check=False)
            tool([t, "-w", "-X", name], check=False)
