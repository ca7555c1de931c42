"""Import the protobuf image modules on a side thread while the dump works.

They cost tens of ms to import and are first needed when the images are built, after the pages
have moved.  The page dump spends its time in splice() and the parasite socket with the GIL
released, so a side thread imports them then for free.  Only imports happen on that thread:
every ptrace call stays on the main (tracer) thread.
"""

import importlib
import threading

_MODULES = ("fown_pb2", "regfile_pb2", "fdinfo_pb2", "vma_pb2", "mm_pb2", "pagemap_pb2", "creds_pb2",
            "sa_pb2", "rlimit_pb2", "timer_pb2", "siginfo_pb2", "rseq_pb2", "core_x86_pb2", "core_pb2",
            "inventory_pb2", "pstree_pb2", "fs_pb2")


def _import_all():
    for name in _MODULES:
        try:
            importlib.import_module(f"crpy.images.pb.{name}")
        except ImportError:
            return                     # the main thread meets the same error, with a hint


_started = []            # one preload per process: a tree's later tasks find the modules there


def start_preload():
    """Start the imports once; later calls (the next tasks of a tree) do nothing: a thread
    started per task cost about a millisecond each while the main thread held the GIL."""
    if _started:
        return
    _started.append(True)
    threading.Thread(target=_import_all, name="crpy-preload", daemon=True).start()
