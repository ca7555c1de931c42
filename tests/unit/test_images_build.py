"""tools/build_protos.py turns images/proto/*.proto into importable modules (protoc 3.21 gencode
under the installed protobuf runtime), with relative imports so the package can live anywhere."""

import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_build_into_a_fresh_package(tmp_path):
    out = tmp_path / "somepkg" / "pb"
    (tmp_path / "somepkg").mkdir()
    (tmp_path / "somepkg" / "__init__.py").write_text("")
    res = subprocess.run([sys.executable, "-m", "tools.build_protos", str(out)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    protos = sorted(p.stem.replace("-", "_") for p in (REPO / "images" / "proto").glob("*.proto"))
    generated = sorted(p.name[:-len("_pb2.py")] for p in out.glob("*_pb2.py"))
    assert generated == protos and (out / "__init__.py").exists()
    for gen in out.glob("*_pb2.py"):
        assert not re.search(r"^import \w+_pb2", gen.read_text(), re.MULTILINE), \
            f"{gen.name} keeps an absolute import of a sibling module"
    assert "from . import core_x86_pb2" in (out / "core_pb2.py").read_text()
    # import every module as somepkg.pb.X in a clean interpreter (the default descriptor pool is global)
    code = ("import importlib, pathlib, sys; sys.path.insert(0, sys.argv[1]);"
            "names = [p.stem for p in pathlib.Path(sys.argv[2]).glob('*_pb2.py')];"
            "[importlib.import_module('somepkg.pb.' + n) for n in names];"
            "from somepkg.pb import core_pb2; c = core_pb2.core_entry(mtype=1);"
            "print(len(names), c.DESCRIPTOR.fields_by_name['thread_info'].message_type.full_name)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(out)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [str(len(protos)), "thread_info_x86"]


def test_protobuf_is_imported_lazily():
    code = ("import sys, crpy.cli, crpy.images.framing, crpy.images.show, crpy.images.magic;"
            "print('google.protobuf' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
