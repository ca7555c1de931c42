"""crpy: checkpoint/restore of Linux process trees, in Python.

The public face is two calls, `crpy.dump(pid, images_dir, **opts)` and
`crpy.restore(images_dir, **opts)`; see crpy.api.  Nothing is imported eagerly, so that the
command line starts fast.
"""

__version__ = "0.1.0"


def dump(pid, images_dir, **opts):
    from crpy import api

    return api.dump(pid, images_dir, **opts)


def restore(images_dir, **opts):
    from crpy import api

    return api.restore(images_dir, **opts)
