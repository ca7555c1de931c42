"""Restore step: the images are the ones the dump wrote (crpy-digests), or no task runs.

The check runs in a background thread while the images are read and the tree is prepared (the
hash releases the GIL), and the pipeline waits for it before the first fork.  It hashes every
image but the page data, then, once the pipeline has planned which task checks which chunks of
the pages images (crpy.restore.pagecheck: each task hashes the pages it reads into place, as it
reads them, and reports damage before it says it is ready), the chunks no task checks: a GiB of
pages is never read twice.  With --check-pages-before-fork (plan_pages never called) every
chunk is hashed here, before the first fork, as the issue asked to the letter; it costs a
read of all the page data, +20-60% on the restore of a GiB here.  A damaged image is
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
    """What to hash is worked out in the caller's thread (Python: crpy-digests decoded, the images
    listed); the hashing runs on a thread of its own, in C with the GIL released, so it does not
    slow the restore's own Python (the check's Python beside the restore's start-up, the two
    taking turns at the GIL, cost a GiB's restore ~4 ms more before the fork than now)."""

    def __init__(self, images_dir, skip):
        self.images_dir, self.skip = images_dir, skip
        self._damage, self._thread = None, None
        self._first, self._pages = [], None     # digest.ImagesCheck: the other images, the pages
        self._failure = None
        self._pages_planned = threading.Event()
        self._left_to_tasks = {}             # {real path: {chunk}} the restored tasks check

    def start(self):
        if self.skip:
            log.info("image integrity not checked (--skip-integrity)")
            return self
        from crpy.images import digest

        try:
            # a pre-dump chain: the previous rounds' images are read too, so they are checked too
            self._first = [digest.ImagesCheck(d, _not_pages) for d in self.chain_dirs()]
        except Exception as e:  # noqa: BLE001 - told by wait()
            self._failure = e
            return self
        self._thread = threading.Thread(target=self._run, daemon=True, name="crpy-integrity")
        self._thread.start()
        return self

    def _run(self):
        try:
            for check in self._first:
                check.hash()
            self._pages_planned.wait()
            if self._pages is None:          # not planned: this thread hashes every chunk
                self._pages = self._pages_checks()
            for check in self._pages:
                check.hash()
        except Exception as e:  # noqa: BLE001 - told by wait(), in the restore's thread
            self._failure = e

    def _pages_checks(self):
        from crpy.images import digest
        from crpy.images.pages import is_pages_image

        return [digest.ImagesCheck(d, is_pages_image, self._left_to_tasks) for d in self.chain_dirs()]

    def chain_dirs(self):
        from crpy.images.chain import chain_dirs

        return chain_dirs(self.images_dir)

    def plan_pages(self, nodes):
        """Leave the page chunks each task reads whole to that task (crpy.restore.pagecheck);
        the check goes on with the rest.  Not called: every chunk is checked here."""
        if self._thread is None or self._pages_planned.is_set():
            return
        from crpy.restore import pagecheck

        try:
            self._left_to_tasks = pagecheck.plan(nodes, self.chain_dirs())
            self._pages = self._pages_checks()
        except Exception as e:  # noqa: BLE001 - told by wait()
            self._failure = e
            self._pages = []
        finally:
            self._pages_planned.set()

    def damage(self):
        """The one-line error of the damaged images, or None (waits for the check)."""
        self._pages_planned.set()            # no plan by now: the check hashes every chunk
        if self._thread is not None:
            from crpy.kernel.clone import join_before_fork

            join_before_fork(self._thread)
            self._thread = None
            self._damage = self._errors()
        elif self._failure is not None and self._damage is None:
            self._damage = self._errors()
        if not self._damage:
            return None
        first = self._damage[0]
        if len(self._damage) > 1:
            more = (f" (and {len(self._damage) - 1} more damaged images: crpy check-images -D "
                    f"{self.images_dir} lists them)")
            first.args = (str(first) + more,)
        return first

    def _errors(self):
        if self._failure is not None:
            return [ImageError(self.images_dir, f"cannot check the images: {self._failure}")]
        damage = [e for check in self._first for e in check.errors()]
        told = {str(e) for e in damage}      # a lost crpy-digests: told once, not per phase
        return damage + [e for check in self._pages or () for e in check.errors() if str(e) not in told]

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
            inline = sum(len(c) for c in self._left_to_tasks.values())
            log.info("images intact (crpy-digests)%s",
                     f"; {inline} page chunks are checked by the tasks that read them" if inline else "")


def _not_pages(name):
    from crpy.images.pages import is_pages_image

    return not is_pages_image(name)


def start(images_dir, skip=False):
    """The integrity check of images_dir, running; .wait() before the first fork."""
    return IntegrityCheck(images_dir, skip).start()
