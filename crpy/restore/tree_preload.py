"""Import, once in crpy before the first fork, everything the restored tasks import lazily
(fd kinds, protobuf classes, the cffi module, the restorer blob): every task of a tree then
inherits it through fork instead of importing it again (hundreds of milliseconds each,
times the number of tasks).  Best effort: anything that fails here fails again, with its
proper error, in the task that needs it."""

import importlib
import pkgutil

from crpy.log import log


def preload(nodes, images_dir):
    try:
        _preload(nodes, images_dir)
    except Exception as e:                    # noqa: BLE001 - the task reports it properly
        log.debug("preload: %s", e)
    _quiet_gc()


def _quiet_gc():
    """No garbage collection from here on in crpy and the tasks it forks: a collection walks
    (and so writes to) every object, which would copy crpy's whole heap into every task."""
    import gc

    gc.collect()
    gc.freeze()
    gc.disable()


def _preload(nodes, images_dir):
    import crpy.restore.blob as blob
    import crpy.restore.gadgets  # noqa: F401
    import crpy.restore.layout  # noqa: F401
    import crpy.restore.premap  # noqa: F401
    import crpy.restore.sigframe  # noqa: F401
    import crpy.restore.task_state  # noqa: F401
    from crpy import resources
    from crpy.resources import fdtable

    from crpy.restore import child

    blob.args_size()
    blob.blob()
    child._self_maps()                        # compiles its regex once for every task
    live = next((n for n in nodes if n.task is not None), None)
    if live is not None:                      # the protobuf classes of fds (one task's images load them all)
        fdtable.read_fd_images(images_dir, live.pid)
    for info in pkgutil.iter_modules(resources.__path__):     # every fd kind module
        try:
            importlib.import_module(f"crpy.resources.{info.name}")
        except Exception:                     # noqa: BLE001 - a broken kind fails in the task
            pass
