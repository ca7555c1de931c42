"""Generate crpy.images.pb from images/proto/*.proto with protoc.

`python3 -m tools.build_protos OUTDIR` (or build(outdir) from setup.py) runs the system protoc
over every .proto file and rewrites protoc's top-level `import x_pb2` lines into relative
imports, so the modules load as crpy.images.pb.x_pb2 without touching sys.path, and its protobuf
runtime imports into crpy.images.pbload (start-up time).  OUTDIR's __init__.py is kept (created
empty if missing).
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO_DIR = os.path.join(ROOT, "images", "proto")

# protoc writes `import core_x86_pb2 as core__x86__pb2` for a sibling .proto file
_ABS_IMPORT = re.compile(r"^import (\w+_pb2) as (\w+)$", re.MULTILINE)


def _protoc():
    path = shutil.which("protoc")
    if not path:
        sys.exit("build_protos: protoc not found (apt-get install protobuf-compiler)")
    return path


# protoc's runtime imports, pointed at crpy.images.pbload (same calls, without protobuf's
# pure-Python layers at start-up); a protoc that writes other lines keeps its own.
_RUNTIME_IMPORTS = {
    "from google.protobuf.internal import builder as _builder": "from crpy.images import pbload as _builder",
    "from google.protobuf import descriptor as _descriptor": "_descriptor = _builder",
    "from google.protobuf import descriptor_pool as _descriptor_pool": "_descriptor_pool = _builder",
    "from google.protobuf import symbol_database as _symbol_database": "_symbol_database = _builder",
}


def _relativize(text):
    text = _ABS_IMPORT.sub(r"from . import \1 as \2", text)
    lines = text.split("\n")
    if all(line in lines for line in _RUNTIME_IMPORTS):
        lines = [_RUNTIME_IMPORTS.get(line, line) for line in lines]
    return "\n".join(lines)


def build(outdir):
    """Generate every *_pb2.py into outdir; return the list of generated module names."""
    protos = sorted(glob.glob(os.path.join(PROTO_DIR, "*.proto")))
    if not protos:
        sys.exit(f"build_protos: no .proto files in {PROTO_DIR}")
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [_protoc(), f"--proto_path={PROTO_DIR}", f"--python_out={tmp}"] + protos
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.exit(f"build_protos: protoc failed:\n{res.stderr}")
        names = []
        for gen in sorted(glob.glob(os.path.join(tmp, "*_pb2.py"))):
            with open(gen) as f:
                text = _relativize(f.read())
            name = os.path.basename(gen)
            with open(os.path.join(outdir, name), "w") as f:
                f.write(text)
            names.append(name[:-3])
    init = os.path.join(outdir, "__init__.py")
    if not os.path.exists(init):
        with open(init, "w") as f:
            f.write('"""Generated protobuf modules of crpy\'s image format (tools/build_protos.py)."""\n')
    return names


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python3 -m tools.build_protos OUTDIR")
    names = build(argv[0])
    print(f"build_protos: {len(names)} modules in {argv[0]}")


if __name__ == "__main__":
    main()
