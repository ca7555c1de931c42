"""Restore step: the images are the ones the dump wrote (crpy-digests), or nothing is forked.

The check runs in a background thread while the images are read and the tree is prepared (the
hash releases the GIL), and the pipeline waits for it before the first fork.  A damaged image is
refused in one line naming it, the byte range that differs and the digest expected; if reading
the images failed first (a damaged image often cannot be parsed), the damage is the error told.
Images without crpy-digests (criu's, another tool's) are refused too, with a hint: crpy cannot tell
them from a dump that lost its digests, and a process restored from a damaged image is worse than
one not restored.  --skip-integrity takes the images as they are.
"""

import threading

from crpy.errors import ImageError
from crpy.log import log


class IntegrityCheck:
    def __init__(self, images_dir, skip):
        self.images_dir, self.skip = images_dir, skip
        self._damage, self._thread = None, None

    def start(self):
        if self.skip:
            log.info("image integrity not checked (--skip-integrity)")
            return self
        self._thread = threading.Thread(target=self._run, daemon=True, name="crpy-integrity")
        self._thread.start()
        return self

    def _run(self):
        from crpy.images import digest

        try:
            from crpy.images.chain import chain_dirs

            # a pre-dump chain: the previous rounds' images are read too, so they are checked too
            self._damage = [e for d in chain_dirs(self.images_dir) for e in digest.damaged_images(d)]
        except Exception as e:  # noqa: BLE001 - told by wait(), in the restore's thread
            self._damage = [ImageError(self.images_dir, f"cannot check the images: {e}")]

    def damage(self):
        """The one-line error of the damaged images, or None (waits for the check)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._damage:
            return None
        first = self._damage[0]
        if len(self._damage) > 1:
            more = (f" (and {len(self._damage) - 1} more damaged images: crpy check-images -D "
                    f"{self.images_dir} lists them)")
            first.args = (str(first) + more,)
        return first

    def explain(self, error):
        """The error a failed restore reports: the damage, if an image is damaged (it is what made
        the reading fail), else error itself (also when the digests are just missing)."""
        from crpy.images.digest import DigestsMissing

        damage = self.damage()
        if damage is None or isinstance(damage, DigestsMissing):
            return error
        return damage

    def wait(self):
        """Raise the damage, if any; called before anything is forked."""
        error = self.damage()
        if error is not None:
            raise error
        if not self.skip:
            log.info("images intact (crpy-digests)")


def start(images_dir, skip=False):
    """The integrity check of images_dir, running; .wait() before the first fork."""
    return IntegrityCheck(images_dir, skip).start()
