"""What the socket kinds other than unix (inet_udp, netlink_socket, packet_socket) share.  At dump:
a refusal in one line, a look at crpy's own copy of the task's socket (pidfd_getfd: the same
socket, nothing taken from the task), whether anything waits to be read, and the record read
at check() time that dump_fd() then writes.  At restore: a socket made up, or one error."""

import socket


def refuse(pid, fd, what, hint):
    from crpy.errors import UnsupportedResource

    raise UnsupportedResource(pid, what, fd, None, hint)


def read_copy(pid, fd, reader):
    """reader(socket) on a copy of the task's fd `fd`, closed afterwards."""
    from crpy.resources import taskfd

    s = socket.socket(fileno=taskfd.duplicate(pid, fd))
    try:
        return reader(s)
    finally:
        s.close()


def has_queued(s):
    """Something waits to be read (a datagram, even an empty one, or a message): peeked, not taken."""
    try:
        s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return True
    except BlockingIOError:
        return False


def memo(key, make):
    """What make() finds once for the whole dump (sock_diag's answer)."""
    from crpy import resources

    if key not in resources.dump_memo:
        resources.dump_memo[key] = make()
    return resources.dump_memo[key]


def keep(kind, ino, entry):
    """The entry check() read, for dump_fd."""
    from crpy import resources

    resources.dump_memo.setdefault(kind + "-read", {})[ino] = entry


def kept(kind, fdfacts, file_id):
    """A copy of the entry check() read for this socket, with its file id, status flags and owner."""
    from crpy import resources
    from crpy.resources.regfile import fown

    read = resources.dump_memo[kind + "-read"][fdfacts.st.st_ino]
    entry = type(read)()
    entry.CopyFrom(read)
    entry.id, entry.flags = file_id, fdfacts.info.flags & ~0o2000000     # O_CLOEXEC is the fdinfo entry's
    entry.fown.CopyFrom(fown())
    return entry


def made(s, make, flags, message):
    """The fd of socket s once make(s) has set it up, with file status flags `flags` (O_NONBLOCK);
    on failure s is closed and RestoreError says message(OSError)."""
    import fcntl
    import os

    from crpy.errors import RestoreError

    try:
        make(s)
    except OSError as err:
        s.close()
        raise RestoreError(message(err)) from None
    fd = s.detach()
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & os.O_NONBLOCK)
    return fd
