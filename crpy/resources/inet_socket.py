"""Inet sockets, fd type INETSK: each goes to the module of its protocol, which owns its dump and
restore.  TCP is crpy.resources.inet_tcp's; UDP, UDP-Lite, raw and ICMP ("ping") sockets are
crpy.resources.inet_udp's.  Both write CRIU's inet_sk_entry (file_entry.isk)."""

import socket

DATAGRAM_PROTOS = {"UDP", "UDPv6", "UDP-Lite", "UDPLITEv6", "RAW", "RAWv6", "PING", "PINGv6"}


def _module(datagram):
    import importlib

    return importlib.import_module("crpy.resources." + ("inet_udp" if datagram else "inet_tcp"))


def _is_datagram(fdfacts):
    from crpy import resources
    from crpy.resources.unix_socket import socket_kind

    if fdfacts.st.st_ino in resources.dump_memo.get("tcp", {}):
        return False                  # read by inet_tcp.check_fd already: no second getxattr
    return socket_kind(fdfacts.pid, fdfacts.fd).removesuffix(" socket") in DATAGRAM_PROTOS


def check(fdfacts):
    mod = _module(_is_datagram(fdfacts))
    if hasattr(mod, "check"):
        mod.check(fdfacts)


def dump_fd(fdfacts, file_id, files):
    from crpy import resources

    read_by_udp = fdfacts.st.st_ino in resources.dump_memo.get("inet-read", {})
    return _module(read_by_udp).dump_fd(fdfacts, file_id, files)


def restore_fd(entry, ctx):
    return _module(entry.isk.type != socket.SOCK_STREAM).restore_fd(entry, ctx)
