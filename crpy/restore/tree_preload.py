"""Import, once in crpy before the first fork, everything the restored tasks import lazily
(the fd kinds the images hold, protobuf classes, the cffi module, the restorer blob), and
what every task would otherwise compute alike (where the sigreturn code is in libc): every task
of a tree then inherits it through fork instead of importing it again (hundreds of milliseconds
each, times the number of tasks).  Only what the images use: a kind no task holds is never
imported (start-up of a small restore).  Best effort: anything that fails here fails again,
with its proper error, in the task that needs it.  It also reads every task's fd table, whose
highest number decides where crpy's own fds go in the tasks (crpy.restore.pipeline._keep_above)."""

from crpy.log import log


def preload(nodes, images_dir):
    """Returns the highest fd number of any task of the tree (-1: none), None if unknown."""
    for step in (_own_state, _preload, _find_sigreturns):
        _best_effort(step, nodes, images_dir)
    top = _best_effort(_fd_tables, nodes, images_dir)
    _quiet_gc()
    return top


def _best_effort(step, nodes, images_dir):
    """step(nodes, images_dir), or None if it fails (the task that needs it fails properly)."""
    try:
        return step(nodes, images_dir)
    except Exception as e:                    # noqa: BLE001 - the task reports it properly
        log.debug("preload: %s", e)
        return None


def _fd_tables(nodes, images_dir):
    """Every task's fdinfo entries, parsed here once (each task finds its own parse, inherited,
    instead of parsing it again: crpy.resources.fdtable._parsed), and all of them handed to the
    root's crpy.resources.shared.make_shared; the highest fd number."""
    from crpy.resources import fdtable, shared

    shared.preloaded(None)
    tables = {n.pid: fdtable.read_fdinfo(images_dir, n.pid) for n in nodes if n.task is not None}
    shared.preloaded(images_dir, tables, fdtable.read_files(images_dir))
    return max((e.fd for entries in tables.values() for e in entries), default=-1)


def _own_state(nodes, images_dir):
    """crpy's own limits, nice, policy... (crpy.restore.task_state.own), read again for this
    restore: every task has them until it applies its own."""
    from crpy.restore import task_state

    task_state.own(fresh=True)


def _find_sigreturns(nodes, images_dir):
    """Where the sigreturn code is that each task's frame returns through (libc's text, read
    and searched once here rather than in every task)."""
    from crpy.restore import child, gadgets

    for n in nodes:
        if n.task is not None and not gadgets.task_restorer(n.task.sigactions):
            gadgets.find_sigreturn(n.task.areas, child.read_range)


def _quiet_gc():
    """No garbage collection from here on in crpy and the tasks it forks: a collection walks
    (and so writes to) every object, which would copy crpy's whole heap into every task."""
    import gc

    gc.freeze()          # no collect() first: a few ms for garbage that frozen costs nothing
    gc.disable()


def _preload(nodes, images_dir):
    import crpy.restore.blob as blob
    import crpy.restore.gadgets  # noqa: F401
    import crpy.restore.layout  # noqa: F401
    import crpy.restore.premap  # noqa: F401
    import crpy.restore.sigframe  # noqa: F401
    import crpy.restore.task_state  # noqa: F401
    from crpy import resources
    from crpy.resources import fdtable, fown, locks  # noqa: F401  (every task's fd restore uses them)
    # what a parent of the tree imports before its children (its shared objects, the leaves'
    # programs): imported in a task, a module costs its bytecode run and the pages it writes
    import array  # noqa: F401
    import bisect  # noqa: F401
    import re  # noqa: F401

    import crpy.kernel.clone  # noqa: F401
    import crpy.resources.shared  # noqa: F401
    import crpy.restore.leaf  # noqa: F401

    from crpy.restore import child

    blob.args_size()
    blob.blob()
    child._self_maps()                        # compiles its regex once for every task
    child._current_rseq()
    from crpy.restore import exe

    exe._own_exe()
    from crpy.kernel.libc import libc

    for name in ("prctl", "personality"):     # looked up once: every task calls them
        getattr(libc(), name)
    live = next((n for n in nodes if n.task is not None), None)
    if live is None:
        return
    _, files = fdtable.read_fd_images(images_dir, live.pid)   # the protobuf classes of fds
    kinds = {fdtable.kind_of_entry(e) for e in files.values()}  # files.img: every kind of the tree
    if "tty" in kinds:
        kinds |= {"pty", "ctty"}              # what a tty entry may turn out to be
    for kind in kinds:
        if resources.supported(kind):
            try:
                resources.module(kind)
            except Exception:                 # noqa: BLE001 - a broken kind fails in the task
                pass
