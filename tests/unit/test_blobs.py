"""The blob build: flat images from address 0, only RELATIVE relocations, symbols present."""

import struct

import pytest

from tests.unit.crhelpers import build_c
from tools import build_blobs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("blobs")
    names = build_blobs.build(str(out))
    return out, names


def _load(path):
    ns = {}
    exec(compile(open(path).read(), str(path), "exec"), ns)
    return ns


def test_parasite_blob_is_built(built):
    out, names = built
    assert "parasite" in names
    mod = _load(out / "_parasite.py")
    assert mod["SYMBOLS"]["parasite_start"] == 0, "the entry stub must come first"
    assert "parasite_main" in mod["SYMBOLS"]
    assert mod["RELATIVE"] == []
    assert 0 < len(mod["IMAGE"]) <= mod["SIZE"] and mod["SIZE"] % 16 == 0
    # entry stub: and $-16,%rsp; ...
    assert mod["IMAGE"][:4] == bytes.fromhex("4883e4f0")


def test_every_present_blob_loads(built):
    out, names = built
    for name in names:
        mod = _load(out / f"_{name}.py")
        for off, _ in mod["RELATIVE"]:
            assert off + 8 <= len(mod["IMAGE"])
        assert all(0 <= v <= mod["SIZE"] for v in mod["SYMBOLS"].values())


def test_function_pointer_table_gets_relative_relocations(tmp_path):
    source = """
        static long one(void) { return 1; }
        static long two(void) { return 2; }
        long (*const table[])(void) = { one, two };
        long pick(long i) { return table[i](); }
    """
    flags = ["-Os", "-fPIE", "-nostdlib", "-ffreestanding", "-fvisibility=hidden", "-static-pie",
             "-Wl,--no-dynamic-linker", f"-Wl,-T,{build_blobs.PARASITE_DIR}/blob.lds",
             "-Wl,--build-id=none", "-Wl,-z,norelro", "-Wl,--no-warn-rwx-segments"]
    blob = build_blobs.elf_to_blob(build_c(tmp_path, "t.elf", source, *flags))
    table = blob["SYMBOLS"]["table"]
    assert [off for off, _ in blob["RELATIVE"]] == [table, table + 8]
    assert sorted(a for _, a in blob["RELATIVE"]) == sorted([blob["SYMBOLS"]["one"], blob["SYMBOLS"]["two"]])

    from crpy.blobs import Blob

    b = Blob("t", blob["IMAGE"], blob["SIZE"], blob["SYMBOLS"], blob["RELATIVE"])
    image = b.relocated(0x10000)
    assert struct.unpack_from("<Q", image, table)[0] == 0x10000 + blob["SYMBOLS"]["one"]


class _FakeSection:
    def __init__(self, kind):
        self.kind, self.name = kind, ".rela.dyn"

    def __getitem__(self, key):
        return {"sh_type": "SHT_RELA", "sh_flags": 2}[key]

    def iter_relocations(self):
        yield {"r_info_type": self.kind, "r_offset": 0x40, "r_addend": 0}


class _FakeElf:
    def __init__(self, kind):
        self.sections = [_FakeSection(kind)]

    def iter_sections(self):
        return iter(self.sections)


def test_other_relocation_types_are_refused():
    assert build_blobs._relocations(_FakeElf(8), "x") == [(0x40, 0)]
    for kind in (1, 6, 7, 10):  # R_X86_64_64, GLOB_DAT, JUMP_SLOT, 32
        with pytest.raises(build_blobs.BlobBuildError, match="only R_X86_64_RELATIVE"):
            build_blobs._relocations(_FakeElf(kind), "x")


def test_generated_module_needs_no_pyelftools(built):
    out, _ = built
    text = open(out / "_parasite.py").read()
    assert "elftools" not in text and "import" not in text
