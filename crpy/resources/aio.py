"""AIO contexts (io_setup): refused at dump, by the ring the kernel maps into the task.

An io_setup context has no fd: it shows as a shared mapping of "/[aio] (deleted)" (its ring of
completion events).  crpy does not make such contexts again yet (CRIU does, for rings with no
request in flight), so a task holding one is refused before it is touched, naming the ring.
"""

from crpy.errors import UnsupportedResource

RING_NAME = "/[aio]"


def is_ring(vma):
    return bool(vma.path) and vma.path.split(" (deleted)")[0] == RING_NAME


def refuse(pid, vma):
    raise UnsupportedResource(pid, "AIO context (io_setup)", target=f"with its ring at {vma.start:#x}",
                              hint="crpy cannot restore AIO contexts yet; io_destroy it before the dump")
