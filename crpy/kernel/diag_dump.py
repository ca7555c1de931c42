"""One sock_diag dump request (SOCK_DIAG_BY_FAMILY, NLM_F_DUMP) and its parsed replies: what the
udp, netlink and packet diag readers share.  The netlink framing is crpy.kernel.sock_diag's."""


def request(body, seq=1):
    """The netlink message carrying a family's request structure `body`, asking for every socket."""
    from crpy.kernel import sock_diag as sd

    return sd._NLMSG.pack(sd._NLMSG.size + len(body), sd.SOCK_DIAG_BY_FAMILY,
                          sd.NLM_F_REQUEST | sd.NLM_F_DUMP, seq, 0) + body


def collect(bodies, parse):
    """{ino: parse(payload)} over the replies to each request body, on one sock_diag socket."""
    import socket
    from crpy.kernel import sock_diag as sd

    out = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, sd.NETLINK_SOCK_DIAG) as s:
        for seq, body in enumerate(bodies, 1):
            s.sendto(request(body, seq), (0, 0))
            for payload in sd._replies(s, seq):
                d = parse(payload)
                out[d.ino] = d
    return out
