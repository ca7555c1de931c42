"""Every image kind crpy knows: its file name, its magic numbers and its entry messages.

The numbers are CRIU's (criu/include/magic.h), so crpy and CRIU read each other's images.
An image file starts with an optional u32 header magic (HEADER_COMMON for ordinary images,
HEADER_SERVICE for CRIU's service images such as stats-dump; none for inventory.img), then the
u32 type magic of its kind, then framed protobuf entries.  Raw images (pages-N.img) have no
magic at all.  Nothing here imports protobuf: messages are named as "module.message" and
resolved by crpy.images.framing when first needed.
"""

from collections import namedtuple

HEADER_COMMON = 0x54564319
HEADER_SERVICE = 0x55105940
# inventory_entry.img_version that CRIU 4.x writes (CRTOOLS_IMAGES_V1_1) and crpy accepts
IMG_VERSION = 2

# name        : key used by framing.write_image/read_image and crpy show
# pattern     : file name, with {id} for the per-object number (pid, files id, pages id ...);
#               {id:x} where CRIU prints it in hex
# magic       : type magic, None for raw images
# header      : HEADER_COMMON, HEADER_SERVICE or None
# entry       : "module.message" of every entry (after the head, if any)
# head        : "module.message" of a first entry of another type (pagemap), or None
# payload     : name of the entry field giving the length of raw bytes after each entry, or None;
#               "a+b": the sum of those fields (tcp-stream: both queues), which the writer sets
# tail        : the head may instead be followed by raw data up to the end of the file (ghost files
#               whose head has chunks unset)
Kind = namedtuple("Kind", "name pattern magic header entry head payload tail")


def _k(name, pattern, magic, entry, header=HEADER_COMMON, head=None, payload=None, tail=False):
    return Kind(name, pattern, magic, header, entry, head, payload, tail)


KINDS = {k.name: k for k in (
    _k("inventory", "inventory.img", 0x58313116, "inventory_pb2.inventory_entry", header=None),
    _k("pstree", "pstree.img", 0x50273030, "pstree_pb2.pstree_entry"),
    _k("core", "core-{id}.img", 0x55053847, "core_pb2.core_entry"),
    _k("ids", "ids-{id}.img", 0x54432030, "core_pb2.task_kobj_ids_entry"),
    _k("mm", "mm-{id}.img", 0x57492820, "mm_pb2.mm_entry"),
    _k("pagemap", "pagemap-{id}.img", 0x56084025, "pagemap_pb2.pagemap_entry",
       head="pagemap_pb2.pagemap_head"),
    _k("pagemap_shmem", "pagemap-shmem-{id}.img", 0x56084025, "pagemap_pb2.pagemap_entry",
       head="pagemap_pb2.pagemap_head"),
    _k("pages", "pages-{id}.img", None, None, header=None),
    _k("files", "files.img", 0x56303138, "fdinfo_pb2.file_entry"),
    _k("fdinfo", "fdinfo-{id}.img", 0x56213732, "fdinfo_pb2.fdinfo_entry"),
    _k("fs", "fs-{id}.img", 0x51403912, "fs_pb2.fs_entry"),
    _k("pipes_data", "pipes-data.img", 0x56453709, "pipe_data_pb2.pipe_data_entry", payload="bytes"),
    _k("fifo_data", "fifo-data.img", 0x59333054, "pipe_data_pb2.pipe_data_entry", payload="bytes"),
    _k("memfd_inode", "memfd.img", 0x48453499, "memfd_pb2.memfd_inode_entry"),
    _k("seccomp", "seccomp.img", 0x64413049, "seccomp_pb2.seccomp_entry"),
    _k("timens", "timens-{id}.img", 0x43114433, "timens_pb2.timens_entry"),
    _k("cpuinfo", "cpuinfo.img", 0x61404013, "cpuinfo_pb2.cpuinfo_entry"),
    _k("stats", "stats-{id}", 0x57093306, "stats_pb2.stats_entry", header=HEADER_SERVICE),
    _k("remap_fpath", "remap-fpath.img", 0x59133954, "remap_file_path_pb2.remap_file_path_entry"),
    _k("tty_info", "tty-info.img", 0x59453036, "tty_pb2.tty_info_entry"),
    _k("tty_data", "tty-data.img", 0x59413026, "tty_pb2.tty_data_entry"),
    _k("ghost_file", "ghost-file-{id:x}.img", 0x52583605, "ghost_file_pb2.ghost_chunk_entry",
       head="ghost_file_pb2.ghost_file_entry", payload="len", tail=True),
    _k("file_locks", "filelocks.img", 0x54323616, "file_lock_pb2.file_lock_entry"),
    _k("sk_queues", "sk-queues.img", 0x56264026, "sk_packet_pb2.sk_packet_entry", payload="length"),
    # the receive queue, then the send queue
    _k("tcp_stream", "tcp-stream-{id:x}.img", 0x51465506, "tcp_stream_pb2.tcp_stream_entry",
       payload="inq_len+outq_len"),
    # crpy's own, not a CRIU image: no .img suffix, so crit and criu never take it for one
    _k("digests", "crpy-digests", 0x63727064, "crpy_digest_pb2.image_digest_entry",
       head="crpy_digest_pb2.digest_head"),
)}

# The names crit prints as "magic" for each kind
CRIT_NAMES = {
    "inventory": "INVENTORY", "pstree": "PSTREE", "core": "CORE", "ids": "IDS", "mm": "MM",
    "pagemap": "PAGEMAP", "pagemap_shmem": "PAGEMAP", "pages": "PAGES", "files": "FILES",
    "fdinfo": "FDINFO", "fs": "FS", "pipes_data": "PIPES_DATA", "fifo_data": "FIFO_DATA",
    "memfd_inode": "MEMFD_INODE", "seccomp": "SECCOMP", "timens": "TIMENS", "cpuinfo": "CPUINFO", "stats": "STATS",
    "remap_fpath": "REMAP_FPATH", "ghost_file": "GHOST_FILE", "tty_info": "TTY_INFO", "tty_data": "TTY_DATA", "sk_queues": "SK_QUEUES",
    "tcp_stream": "TCP_STREAM",
    "file_locks": "FILE_LOCKS", "digests": "CRPY_DIGESTS",
}

# Type magics of CRIU images crpy cannot decode yet: only to say what a file is.
OTHER_MAGICS = {
    0x59423047: "APPARMOR", 0x49353943: "AUTOFS", 0x67343323: "BINFMT_MISC",
    0x64324033: "BPFMAP_DATA", 0x57506142: "BPFMAP_FILE", 0x59383330: "CGROUP",
    0x54023547: "CREDS", 0x44523722: "EVENTFD_FILE",
    0x45023858: "EVENTPOLL_FILE", 0x44433746: "EVENTPOLL_TFD", 0x59255641: "EXT_FILES",
    0x55096122: "FANOTIFY_FILE", 0x56506035: "FANOTIFY_MARK", 0x58364939: "FIFO",
    0x56443851: "INETSK",
    0x48424431: "INOTIFY_FILE", 0x54562009: "INOTIFY_WD", 0x55453737: "IPCNS_MSG",
    0x59573019: "IPCNS_SEM", 0x46283044: "IPCNS_SHM", 0x53115007: "IPC_VAR",
    0x57004059: "IRMAP_CACHE", 0x57464056: "ITIMERS", 0x57023458: "KDAT",
    0x55563928: "MNTS", 0x57373951: "NETDEV", 0x58005614: "NETLINK_SK", 0x55933752: "NETNS",
    0x61394011: "NS_FILES", 0x60454618: "PACKETSK", 0x61157326: "PIDNS", 0x56513555: "PIPES",
    0x52603957: "POSIX_TIMERS", 0x50363636: "REG_FILES",
    0x57113925: "RLIMIT", 0x55344201: "SIGACT", 0x59255647: "SIGNAL", 0x57323820: "SIGNALFD",
    0x50493712: "TIMERFD",
    0x59433025: "TTY_FILES",
    0x57143751: "TUNFILE", 0x54373943: "UNIXSK", 0x55474906: "USERNS", 0x54473203: "UTSNS",
    0x54123737: "VMAS",
}

_BY_MAGIC = {}
for _kind in KINDS.values():
    if _kind.magic is not None:
        _BY_MAGIC.setdefault(_kind.magic, _kind)


def kind(name):
    """The Kind called name; KeyError names the known kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown image kind {name!r}; known: {', '.join(sorted(KINDS))}") from None


def kind_by_magic(magic):
    """The Kind with this type magic (pagemap for both pagemap kinds), or None."""
    return _BY_MAGIC.get(magic)


def describe_magic(magic):
    """A human name for a type magic: a crpy kind, a CRIU image name, or the hex value."""
    k = _BY_MAGIC.get(magic)
    if k is not None:
        return f"a {k.name} image"
    if magic in OTHER_MAGICS:
        return f"a CRIU {OTHER_MAGICS[magic]} image (not decoded by crpy)"
    if magic in (HEADER_COMMON, HEADER_SERVICE):
        return "an image header magic"
    return f"unknown magic {magic:#010x}"


def kind_by_filename(filename):
    """Guess the Kind from a file name (pages-N.img, stats-dump ...), or None."""
    import re

    for k in KINDS.values():
        regex = re.escape(k.pattern).replace(r"\{id\}", "[0-9A-Za-z_]+").replace(r"\{id:x\}", "[0-9a-f]+")
        regex = "^" + regex + "$"
        if re.match(regex, filename):
            return k
    return None
