"""Step: write the images of the dump that are not page data: inventory, pstree, core, ids, mm,
fs, files, fdinfo.  The ids are simple: one task, so vm/files/fs/sighand are all 1."""

from crpy.images import framing
from crpy.log import log

IMG_VERSION = 2           # CRIU 4.x (CRTOOLS_IMAGES_V1_1)
FILES_ID = 1


def ids_entry():
    from crpy.images.pb import core_pb2

    return core_pb2.task_kobj_ids_entry(vm_id=1, files_id=FILES_ID, fs_id=1, sighand_id=1)


def inventory_entry():
    from crpy.images.pb import inventory_pb2

    return inventory_pb2.inventory_entry(img_version=IMG_VERSION, fdinfo_per_id=True,
                                         root_ids=ids_entry(), ns_per_id=True,
                                         lsmtype=inventory_pb2.NO_LSM)


def pstree_entry(facts, misc):
    from crpy.images.pb import pstree_pb2

    return pstree_pb2.pstree_entry(pid=facts.pid, ppid=0, pgid=misc.get("pgid", facts.stat.pgrp),
                                   sid=misc.get("sid", facts.stat.session), threads=[facts.pid])


def write_images(images_dir, pid, dumped):
    """`dumped` maps image kind -> entries (core, mm, fs, fdinfo, files, pstree)."""
    w = lambda kind, entries, id=None: framing.write_image(  # noqa: E731
        framing.image_path(images_dir, kind, id), kind, entries)
    w("inventory", [inventory_entry()])
    w("pstree", [dumped["pstree"]])
    w("core", [dumped["core"]], pid)
    w("ids", [ids_entry()], pid)
    w("mm", [dumped["mm"]], pid)
    w("fs", [dumped["fs"]], pid)
    w("fdinfo", dumped["fdinfo"], FILES_ID)
    w("files", dumped["files"])
    log.info("Images of task %d written to %s", pid, images_dir)
