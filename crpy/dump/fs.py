"""Step: fs-PID.img, the task's cwd and root (as files.img entries) and umask."""


def dump_fs(facts, files):
    from crpy.images.pb import fs_pb2

    return fs_pb2.fs_entry(cwd_id=files.add_path(facts.cwd, facts.cwd_st),
                           root_id=files.add_path(facts.root, facts.root_st), umask=facts.status.umask)
