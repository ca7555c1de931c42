"""Step: write the images of the dump that are not page data.  Per task: core, ids, mm, fs,
fdinfo; once per tree: inventory, cpuinfo, pstree, files; last, crpy-digests: a digest of every
image (crpy.images.digest), the big ones hashed in the background as soon as they are written.  Each task gets its own kernel-object ids
(its index in the tree, from 1), except files_id, which a task sharing its parent's fd table
(CLONE_FILES) takes from the parent: vm/fs/sighand are not shared between tasks yet."""

from crpy.images import digest, framing
from crpy.log import log

IMG_VERSION = 2           # CRIU 4.x (CRTOOLS_IMAGES_V1_1)
FILES_ID = 1              # the root's
_recorders = {}           # images dir -> digest.Recorder of the dump writing it


def ids_entry(n=1, files_id=None):
    from crpy.images.pb import core_pb2

    return core_pb2.task_kobj_ids_entry(vm_id=n, files_id=files_id or n, fs_id=n, sighand_id=n)


def inventory_entry(tcp_close=False):
    """tcp_close: dumped with --tcp-close (criu's field: its restore then wants --tcp-close too)."""
    from crpy.images.pb import inventory_pb2

    e = inventory_pb2.inventory_entry(img_version=IMG_VERSION, fdinfo_per_id=True,
                                      root_ids=ids_entry(), ns_per_id=True,
                                      lsmtype=inventory_pb2.NO_LSM)
    if tcp_close:
        e.tcp_close = True
    return e


def _write(images_dir, kind, entries, id=None):
    framing.write_image(framing.image_path(images_dir, kind, id), kind, entries)


def write_task_images(images_dir, pid, n, dumped, files_id=None):
    """`dumped` maps image kind -> entries (core, mm, fs, fdinfo); n: the task's ids; files_id:
    another task's, when it shares that task's fd table (whose fdinfo image is written then)."""
    _write(images_dir, "core", [dumped["core"]], pid)
    _write(images_dir, "ids", [ids_entry(n, files_id)], pid)
    if "mm" in dumped:
        _write(images_dir, "mm", [dumped["mm"]], pid)
        _write(images_dir, "fs", [dumped["fs"]], pid)
        if files_id in (None, n):
            _write(images_dir, "fdinfo", dumped["fdinfo"], n)
    log.info("Images of task %d written to %s", pid, images_dir)


def write_tree_images(images_dir, pstree, files, tcp_close=False):
    from crpy import cpuinfo

    _write(images_dir, "inventory", [inventory_entry(tcp_close)])
    cpuinfo.write(images_dir)        # the XSAVE features and layout the core images were read in
    _write(images_dir, "pstree", pstree)
    _write(images_dir, "files", files)


def begin_image_digests(images_dir, skip=False):
    """This dump writes crpy-digests (unless skip: criu's --skip-integrity-like opt-out)."""
    _recorders.pop(str(images_dir), None)
    if not skip:
        _recorders[str(images_dir)] = digest.Recorder(images_dir)


class _NotFollowed:
    """What follow_image gives when the dump writes no digests."""

    def rewritten(self, offset, length):
        pass

    def close(self):
        pass

    def abandon(self):
        pass


def follow_image(images_dir, path, fed=False):
    """path is about to be written front to back (pages-N.img): hash it as it lands; the writer
    calls .rewritten(offset, length) for bytes it writes again, and .close() once done.
    fed: the writer can compute the crc32c digests itself (the parasite): given one with
    .fed_by_writer set if that is the hash of this dump (crpy.images.digest._Fed)."""
    recorder = _recorders.get(str(images_dir))
    return recorder.follow(path, fed) if recorder is not None else _NotFollowed()


def digest_written_images(images_dir, unfollowed=None):
    """Start hashing the images written so far (a task's pages) while the dump goes on;
    unfollowed: bytes written since the last call into images follow_image() does not hash."""
    recorder = _recorders.get(str(images_dir))
    if recorder is not None:
        recorder.hash_written(unfollowed)


def write_image_digests(images_dir):
    """The last image of a dump: crpy-digests, a digest of every other one."""
    recorder = _recorders.pop(str(images_dir), None)
    if recorder is None:
        log.info("No digests of the images written (--skip-integrity)")
    else:
        count = recorder.write()
        log.info("Digests of %d images written to %s", count, images_dir)
    _send_to_page_server(images_dir)


def _send_to_page_server(images_dir):
    """--page-server: the server gets the rest of the images and checks them, before the kill."""
    from crpy import pageserver

    pageserver.finish(images_dir)
