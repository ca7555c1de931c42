"""Package build: the cffi module, the generated protobuf modules and the two C blobs.

All three are produced here, at install time, so nothing is compiled when crpy runs:
- crpy.kernel._sys     from crpy/kernel/cdef/ (cffi, out-of-line API mode);
- crpy.images.pb.*_pb2 from images/proto/*.proto (protoc);
- crpy.blobs._parasite, crpy.blobs._restorer from parasite/ (gcc, then pyelftools).
`make build` runs the same generators in place for development.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class BuildWithGenerated(build_py):
    def run(self):
        super().run()
        from tools import build_blobs, build_protos

        build_protos.build(os.path.join(self.build_lib, "crpy", "images", "pb"))
        build_blobs.build(os.path.join(self.build_lib, "crpy", "blobs"))


setup(cmdclass={"build_py": BuildWithGenerated}, cffi_modules=["crpy/kernel/_build_ffi.py:ffi"])
