"""The fuzz targets: one per image reader of crpy, each fed the bytes of one image file.

    framing   crpy.images.framing.read_image on the file (payload kinds: read_payload_image)
    show      crpy.images.show.show([file]) -- what `crpy show FILE` does, JSON included
    load      the file put in place in a copy of a real dump's directory, then every read a
              restore makes before its first fork (crpy.restore.pipeline._restore up to
              images_checked.wait(), without the steps that map memory or make files):
              cpuinfo.check_images, tree.load_tree, each task's fd images; crpy-digests is
              read by digest.damaged_images (the other kinds are fuzzed with --skip-integrity
              semantics: a changed image would only ever meet the digest refusal)
    cpuinfo   crpy.cpuinfo's reading of cpuinfo.img and the images' XSAVE layout against this
              CPU's; for core images the XSAVE decoder (load._xsave_bytes) of every fpregs

The oracle (check_outcome): a reader returns, or refuses with a CrpyError told in one line; an
ImageError names an image of the directory, and the offset in it (unless the image is missing).
Anything else -- another exception, a traceback -- is a crash.
"""

import io
import os
import shutil

from crpy.errors import CrpyError, ImageError


class OracleViolation(AssertionError):
    """A refusal that does not name the image or the offset, or takes more than one line."""


class Target:
    """A reader, fed the bytes of the image named `name` (its kind is `kind`)."""

    def __init__(self, kind, name, workdir, base_dir=None):
        self.kind, self.name, self.workdir = kind, name, workdir
        self.dir = os.path.join(workdir, "images")
        if base_dir is not None:
            shutil.copytree(base_dir, self.dir)
        else:
            os.makedirs(self.dir, exist_ok=True)
        self.path = os.path.join(self.dir, name)

    def put(self, data):
        with open(self.path, "wb") as f:
            f.write(data)

    def run(self, data):
        """Feed data; returns None, or the CrpyError the reader refused it with."""
        self.put(data)
        try:
            self.read()
        except CrpyError as e:
            return e
        return None

    def wants_offset(self, error):
        return os.path.abspath(str(error.path)) == os.path.abspath(self.path)


class FramingTarget(Target):
    def read(self):
        from crpy.images import framing, magic

        if magic.kind(self.kind).payload:
            framing.read_payload_image(self.path, self.kind)
        else:
            framing.read_image(self.path, self.kind)


class ShowTarget(Target):
    def read(self):
        from crpy.images import show

        show.show([self.path], out=io.StringIO(), err=io.StringIO())


class LoadTarget(Target):
    def read(self):
        from crpy import cpuinfo
        from crpy.resources import fdtable
        from crpy.restore import tree

        if self.kind == "digests":
            from crpy.images import digest

            for error in digest.damaged_images(self.dir):
                raise error
            return
        cpuinfo.check_images(self.dir)
        nodes = tree.load_tree(self.dir)
        for node in nodes:
            if node.task is not None:
                fdtable.read_fd_images(self.dir, node.pid)

    def wants_offset(self, error):
        """A missing image or directory has no offset to name; nor has, when crpy-digests is
        fuzzed, another image that its (damaged) digests do not list."""
        if self.kind == "digests" and error.path != self.path:
            return "not in the dump's digests" not in str(error)
        return os.path.isfile(error.path)


class CpuinfoTarget(Target):
    def read(self):
        from crpy import cpuinfo
        from crpy.images import framing
        from crpy.restore import load

        if self.kind == "cpuinfo":
            cpuinfo.check_images(self.dir)
            return
        for core in framing.read_image(self.path, "core"):
            if core.HasField("thread_info"):
                load._xsave_bytes(self.path, core.thread_info.fpregs)


TARGETS = {"framing": FramingTarget, "show": ShowTarget, "load": LoadTarget, "cpuinfo": CpuinfoTarget}


def check_outcome(target, error):
    """Raise OracleViolation if the refusal (a CrpyError, or None) breaks the promises above."""
    if error is None:
        return
    line = error.one_line()
    if "\n" in line:
        raise OracleViolation(f"refusal of more than one line: {line!r}")
    if isinstance(error, ImageError):
        if not str(error.path).startswith(target.dir):
            raise OracleViolation(f"refusal names no image of the directory: {line}")
        if target.wants_offset(error) and error.offset is None:
            raise OracleViolation(f"refusal names no offset: {line}")
