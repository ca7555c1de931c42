"""Files several tasks of a tree share: made once, by the root task, before its first fork.

A description inherited across fork (one files.img id in the fdinfo of several tasks) and a
pipe or FIFO whose ends live in different tasks must come back as ONE kernel object.  The tree
restore calls fdtable.before_children in each task before it forks its children; the first
call (in the root, the ancestor of every task) opens every shared object here and keeps it
among crpy's own fds (at keep_above or higher), so all descendants inherit it.  Each task's
restore_fds takes its shared files from `inherited()`; the restorer blob closes them with
crpy's other fds.  They must outlive the fd restore of the task that has them: a task cloned
into that task's fd table (CLONE_FILES) forks its own children after it, and those children
take their shared files from the same table.
"""

_shared = None        # SharedFiles of this process tree; set in the root, inherited by fork


class SharedFiles:
    def __init__(self, ctx, fds):
        self.ctx, self.fds = ctx, fds     # RestoreContext (its cache: pipes, FIFOs), file id -> fd


def inherited():
    return _shared


def _tree_fd_tables(images_dir):
    """{pid: fdinfo entries} of every task, and the files.img entries by id."""
    from crpy.images import framing
    from crpy.resources.fdtable import read_fdinfo, read_files

    tables = {}
    for item in framing.read_image(framing.image_path(images_dir, "pstree"), "pstree"):
        try:
            tables[item.pid] = read_fdinfo(images_dir, item.pid)
        except Exception:
            continue                      # a zombie has no fd table
    if not tables:
        return {}, {}
    try:
        return tables, read_files(images_dir)
    except Exception:
        return {}, {}                     # no files.img: each task's own fd restore says so


_preloaded = None                  # (images dir, fd tables, files by id) read by this restore's preload


def preloaded(images_dir, tables=None, files=None):
    """The fd tables {pid: fdinfo entries} and files.img entries by id of the tree in images_dir,
    as the restore read them before the root's fork (crpy.restore.tree_preload): make_shared, in
    the root, takes them instead of reading two images of every task again.  None: forget them."""
    global _preloaded
    _preloaded = None if images_dir is None else (images_dir, tables, files)


def highest_wanted_fd(images_dir, floor=0):
    """The highest fd number any task of the tree wants (at least `floor`): what the restore
    opens for several tasks goes above it."""
    tables, _ = _tree_fd_tables(images_dir)
    return max([floor] + [e.fd for entries in tables.values() for e in entries])


def _object_key(entry, files):
    """What one kernel object a files.img entry stands for: a pipe/FIFO by pipe_id, a memfd by
    its inode, unix sockets by the group of those connected to each other, else its id."""
    if entry.HasField("pipe"):
        return ("pipe", entry.pipe.pipe_id)
    if entry.HasField("fifo"):
        return ("fifo", entry.fifo.pipe_id)
    if entry.HasField("memfd"):                # every description of one memfd inode
        return ("memfd", entry.memfd.inode_id)
    if entry.HasField("usk"):
        from crpy.resources import unix_socket

        return unix_socket.object_key(entry, files)
    if entry.HasField("tty"):                  # both sides of a pty pair: info ids 2k, 2k+1
        return ("tty", entry.tty.tty_info_id // 2)
    return ("id", entry.id)


def _session_terminals(images_dir):
    """Object keys of the pty pairs that are the controlling terminal of a session."""
    import os

    from crpy.images import framing

    path = framing.image_path(images_dir, "tty_info")
    if not os.path.exists(path):
        return []
    return [("tty", e.id // 2) for e in framing.read_image(path, "tty_info") if e.HasField("pty") and e.sid]


def make_shared(images_dir, keep_above):
    """In the root task, before its first fork: open what two or more tasks share."""
    global _shared
    if _shared is not None:
        return
    from crpy import resources
    from crpy.resources.fdtable import RestoreContext, kind_of_entry

    if _preloaded is not None and _preloaded[0] == images_dir:
        tables, files = _preloaded[1:]
    else:
        tables, files = _tree_fd_tables(images_dir)
    users = {}
    for pid, entries in tables.items():
        for e in entries:
            if e.id in files:
                users.setdefault(_object_key(files[e.id], files), set()).add(pid)
    for key in _session_terminals(images_dir):  # the leader takes it before forking its members
        users.setdefault(key, set()).add("session")
    for pid, file_id in resources.extra_users(files):      # an epoll registration of another's file
        if file_id in files:
            users.setdefault(_object_key(files[file_id], files), set()).add(pid)
    top = max([0] + [e.fd for entries in tables.values() for e in entries])
    ctx = RestoreContext(images_dir, files, max(top + 1, keep_above))
    fds = {}
    for pid, entries in tables.items():
        for e in entries:
            entry = files.get(e.id)
            if entry is None or e.id in fds or len(users[_object_key(entry, files)]) < 2:
                continue
            fds[e.id] = ctx.hold(resources.module(kind_of_entry(entry)).restore_fd(entry, ctx))
    ctx.run_cleanups()                    # ghosts: every shared fd is open, the names can go
    _shared = SharedFiles(ctx, fds)
