"""Step: fs-PID.img, the task's cwd and root (as files.img entries) and umask.  A cwd removed
since (rmdir) is a ghost directory (crpy.resources.ghost): made again for the restore, removed
once the task is in it."""


def dump_fs(facts, files):
    from crpy.images.pb import fs_pb2
    from crpy.resources import ghost

    cwd, unlinked = ghost.original_path(facts.cwd), None
    if cwd != facts.cwd:
        unlinked = f"/proc/{facts.pid}/cwd"
    return fs_pb2.fs_entry(cwd_id=files.add_path(cwd, facts.cwd_st, unlinked_source=unlinked),
                           root_id=files.add_path(facts.root, facts.root_st), umask=facts.status.umask)
