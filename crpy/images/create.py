"""Making the images directory and the files in it, safely: crpy often runs as root, and an
images directory may be writable by others.

    make_images_dir(path)   mkdir -p; a directory crpy makes is 0700 whatever the umask
    create_image(path)      a new file, 0600 whatever the umask, opened O_EXCL|O_NOFOLLOW: never
                            through a symlink or a hard link planted under an image's name (an
                            old image of crpy's own, a regular file with one link, is replaced)
    image_opener            open()'s opener for files written beside the images (the log)
"""

import os
import stat

from crpy.errors import ImageError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def make_images_dir(path):
    """Make `path` (and what is missing above it) if needed; the ones made are 0700."""
    missing, p = [], os.path.abspath(path)
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)          # the umask may have taken bits off


def create_image(path):
    """A new image file open for writing (an fd), mode 0600; ImageError (one line) for anything
    else than a missing name or an old image of crpy's own in its place."""
    try:
        fd = _open_new(path)
    except FileExistsError:
        _remove_old_image(path)
        fd = _open_new(path)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def _open_new(path):
    try:
        return os.open(path, _CREATE, 0o600)
    except FileExistsError:
        raise
    except OSError as e:
        raise ImageError(path, f"cannot create image: {os.strerror(e.errno)}",
                         hint="does the images directory exist, and is it writable?") from None


def _remove_old_image(path):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        what = f"a symlink to {os.readlink(path)}"
    elif not stat.S_ISREG(st.st_mode):
        what = "not a regular file"
    elif st.st_nlink != 1:
        what = f"a file with {st.st_nlink} links"
    elif st.st_uid != os.geteuid():
        what = f"a file of uid {st.st_uid}"
    else:
        os.unlink(path)             # an earlier dump's image: replaced
        return
    raise ImageError(path, f"refusing to write an image over {what}",
                     hint="someone planted it in the images directory: remove it, or dump into a directory only you can write")


def image_opener(path, flags):
    """For open(path, "w", opener=image_opener): the file made as create_image() makes it."""
    return create_image(path)
