"""AIO contexts (io_setup rings): dumped and made again, as CRIU does.

An io_setup context has no fd: it shows as a shared mapping of "/[aio] (deleted)", the ring of
completion events the kernel fills and the program reads (a struct aio_ring header: id, nr, head,
tail, magic, features, header length; then nr struct io_event).  The context id a program holds
is the ring's address.

Dump: the ring's VMA gets CRIU's VMA_AREA_AIORING status and its pages are saved like private
memory (head, tail and the events not read yet are in them); mm.aios records (id = address,
nr_req, ring_len) per ring.  A ring whose header is not what io_setup makes is refused by name.
Restore: the saved ring is premapped like anonymous memory and moved into place with the other
VMAs; the restorer blob then makes a new context, brings its tail and head to the saved ones,
copies the events and mremaps the new ring over the copy (parasite/restorer.c, restore_aio).

Requests still in flight cannot be seen from outside the kernel (the ring holds completions
only; no /proc file counts requests; CRIU's parasite does not check either: "XXX: wait aio
completion").  crpy refuses a ring whose tail moved while the task was frozen (a request
completed during the dump, so one was in flight), before the task is killed; a request that
stays pending through the whole dump (an IOCB_CMD_POLL on an idle fd) goes unseen and is lost
at restore.
"""

import struct

from crpy.errors import UnsupportedResource
from crpy.images.vma_status import VMA_AREA_AIORING

RING_NAME = "/[aio]"
PAGE = 4096
HEADER = struct.Struct("<8I")      # id, nr, head, tail, magic, compat, incompat, header_length
EVENT_SIZE = 32                    # struct io_event
RING_MAGIC, COMPAT_FEATURES, INCOMPAT_FEATURES = 0xA10A10A1, 1, 0
KIND = "AIO context (io_setup)"
PROT_READ_WRITE = 3
_IN_FLIGHT_HINT = "let its requests complete (io_getevents) before the dump"


def is_ring(vma):
    return bool(vma.path) and vma.path.split(" (deleted)")[0] == RING_NAME


def events_in(ring_len):
    """nr of a ring of ring_len bytes: the kernel makes it as many events as its pages hold."""
    return (ring_len - HEADER.size) // EVENT_SIZE


def estimate_nr_req(ring_len):
    """The io_setup argument that makes a ring of ring_len bytes again.  The kernel takes
    max(nr_events, 4 * CPUs) * 2 + 2 events and rounds up to whole pages, so half of what the
    pages hold, less the 2, gives the same pages back (CRIU's aio_estimate_nr_reqs)."""
    return (events_in(ring_len) - 2) // 2


def ring_len_here(nr_req):
    """Bytes of the ring io_setup(nr_req) maps on this machine (fs/aio.c: ioctx_alloc and
    aio_setup_ring), which depends on the number of possible CPUs."""
    nr_events = max(nr_req, 4 * possible_cpus()) * 2 + 2
    return -(-(HEADER.size + nr_events * EVENT_SIZE) // PAGE) * PAGE


def possible_cpus():
    """num_possible_cpus(): the CPUs listed in /sys/devices/system/cpu/possible ("0-3,6")."""
    with open("/sys/devices/system/cpu/possible") as f:
        spans = [part.split("-") for part in f.read().strip().split(",")]
    return sum(int(s[-1]) - int(s[0]) + 1 for s in spans)


def read_header(pid, start):
    """The ring's header fields (dict) from the task's memory."""
    import os

    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    try:
        raw = os.pread(fd, HEADER.size, start)
    finally:
        os.close(fd)
    if len(raw) != HEADER.size:
        raise UnsupportedResource(pid, KIND, target=f"with its ring at {start:#x}",
                                  hint="its ring header cannot be read")
    names = ("id", "nr", "head", "tail", "magic", "compat", "incompat", "header_length")
    return dict(zip(names, HEADER.unpack(raw)))


def check_ring(pid, start, end, header):
    """Refuse a ring this kernel's io_setup would not make so (CRIU's sane_ring, and head/tail
    inside the ring): its contents could not be put back into a new one."""
    h = header
    where = f"with its ring at {start:#x}"
    if (h["magic"], h["compat"], h["incompat"], h["header_length"]) != (
            RING_MAGIC, COMPAT_FEATURES, INCOMPAT_FEATURES, HEADER.size):
        raise UnsupportedResource(pid, KIND, target=f"{where}: header (magic {h['magic']:#x}) is not an AIO ring's",
                                  hint="the program overwrote its ring header")
    if (end - start) % PAGE or h["nr"] != events_in(end - start):
        raise UnsupportedResource(pid, KIND, target=f"{where}: {h['nr']} events do not fill its {end - start} bytes",
                                  hint="the ring was resized or partly unmapped")
    if h["head"] >= h["nr"] or h["tail"] >= h["nr"]:
        raise UnsupportedResource(pid, KIND, target=f"{where}: head {h['head']} or tail {h['tail']} outside "
                                  f"its {h['nr']} events", hint="the program overwrote its ring header")


def plan(pid, vma):
    """VmaPlan fields of a ring (CRIU's: status VMA_AREA_AIORING alone, MAP_SHARED; its pages
    are saved) after checking its header; the tail is kept to see whether it moves."""

    if vma.prot != PROT_READ_WRITE:      # the new ring comes read-write, as io_setup maps it
        raise UnsupportedResource(pid, KIND, target=f"with its ring at {vma.start:#x} mprotect()ed to {vma.prot:#x}",
                                  hint="leave the ring read-write, as io_setup maps it")
    header = read_header(pid, vma.start)
    check_ring(pid, vma.start, vma.end, header)
    return dict(flags=0x01, status=VMA_AREA_AIORING, ring_tail=header["tail"])


def refuse_in_flight(pid, plans):
    """A completion that arrived while the task was frozen (its pages are saved by now) shows a
    request was in flight: what the dumped ring holds may miss it, so the dump is refused."""

    for p in plans:
        if not p.status & VMA_AREA_AIORING:
            continue
        before, now = p.ring_tail, read_header(pid, p.start)["tail"]
        if now != before:
            raise UnsupportedResource(pid, KIND, target=f"with its ring at {p.start:#x}: AIO requests in flight "
                                      f"(tail moved {before} -> {now} during the dump)", hint=_IN_FLIGHT_HINT)


def ring_entries(plans):
    """mm_entry.aios: one aio_ring_entry (id = ring address, nr_req, ring_len) per ring VMA."""
    from crpy.images.pb import mm_pb2

    return [mm_pb2.aio_ring_entry(id=p.start, ring_len=p.end - p.start, nr_req=estimate_nr_req(p.end - p.start))
            for p in plans if p.status & VMA_AREA_AIORING]


# ---------------------------------------------------------------- restore

def load_rings(path, mm, areas):
    """[(address, ring_len, nr_req)] of mm.aios, each matching a ring VMA of the image (and
    every ring VMA listed): checked before anything is forked."""
    from crpy.images import framing

    rings = {a.start: a for a in areas if a.kind == "aio"}
    out = []
    for i, r in enumerate(mm.aios):
        area = rings.pop(r.id, None)
        if area is None or area.length != r.ring_len or r.ring_len % PAGE or not 0 < r.nr_req:
            raise framing.entry_error(path, f"aios {i}: ring at {r.id:#x} of {r.ring_len} bytes is not an "
                                      "AIO ring VMA of the image")
        if ring_len_here(r.nr_req) != r.ring_len:
            from crpy.errors import RestoreError

            raise RestoreError(f"{path}: the AIO context at {r.id:#x} has a ring of {r.ring_len} bytes; "
                               f"io_setup({r.nr_req}) makes one of {ring_len_here(r.nr_req)} here "
                               f"({possible_cpus()} possible CPUs): it cannot be put back at its address")
        out.append((r.id, r.ring_len, r.nr_req))
    if rings:
        raise framing.entry_error(path, f"the AIO ring VMA at {min(rings):#x} has no aios entry")
    return out


def fill_args(lib, a, rings, keep_above):
    """struct rst_aio per ring for the restorer blob's aio step, and the /dev/zero its reads
    move the new rings' tails with (an fd of crpy's, above keep_above: the blob closes it)."""
    from crpy.errors import RestoreError
    from crpy.resources.fdtable import open_above

    if len(rings) > lib.RST_MAX_AIO:
        raise RestoreError(f"{len(rings)} AIO contexts; the restorer takes at most {lib.RST_MAX_AIO}")
    for i, (addr, length, nr_req) in enumerate(rings):
        a.aio[i].addr, a.aio[i].len, a.aio[i].nr_req = addr, length, nr_req
    a.nr_aio = len(rings)
    a.aio_fd = open_above("/dev/zero", keep_above)
