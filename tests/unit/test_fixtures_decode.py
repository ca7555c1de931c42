"""crpy reads the images CRIU 4.2 wrote (tests/fixtures/criu-4.2, a copy kept in the repository):
every entry of every image, value for value as Debian's crit decodes them, plus facts we know of the
two fixture programs, which are built from their sources here (no prebuilt binary is kept)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from crpy.images import framing, magic, pages, show
from tests.unit.crhelpers import (CRIU_FIXTURES, NR_CLOCK_NANOSLEEP, NR_NANOSLEEP, NR_PAUSE, build_c, image_samples,
                                  kill_quietly, sleeps_in, start_target, wait_for)

REPO = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = CRIU_FIXTURES
PATTERN_LEN = 4 << 20


def _fixture_dir(name):
    d = FIXTURES / f"{name}-images"
    assert d.is_dir(), f"CRIU 4.2 fixtures not found at {d}"
    return d


def _framed_images():
    out = []
    for name in ("counter", "tree"):
        d = FIXTURES / f"{name}-images"
        if not d.is_dir():
            return [pytest.param(None, id="fixtures-missing")]
        out += [pytest.param(p, id=f"{name}/{p.name}") for p in sorted(d.iterdir())
                if not p.name.startswith("pages-")]
    return out


@pytest.mark.parametrize("path", _framed_images())
def test_every_entry_matches_crit(path):
    if path is None:
        _fixture_dir("counter")  # fails with the message saying where they should be
    ours = show.decode_file(str(path))
    crit = image_samples().crit_decode(path)
    assert crit["magic"] == ours["magic"]
    assert len(crit["entries"]) == len(ours["entries"])
    image_samples().assert_matches_crit(crit, ours, path.name, ours["magic"])


def test_no_field_is_unknown_to_our_schema():
    from google.protobuf import unknown_fields

    def unknown(msg):
        found = [f.field_number for f in unknown_fields.UnknownFieldSet(msg)]
        for field, value in msg.ListFields():
            if field.type == field.TYPE_MESSAGE:
                for v in (value if field.is_repeated else [value]):
                    found += unknown(v)
        return found

    count = 0
    for name in ("counter", "tree"):
        for p in sorted(_fixture_dir(name).iterdir()):
            if p.name.startswith("pages-"):
                continue
            for entry in framing.read_image(str(p)):
                assert unknown(entry) == [], f"{p}: fields our .proto files lack"
                count += 1
    assert count > 60


def test_counter_facts():
    d = _fixture_dir("counter")
    (task,) = framing.read_image(str(d / "pstree.img"), "pstree")
    pid = task.pid
    assert (pid, task.ppid, task.pgid, task.sid, list(task.threads)) == (8802, 0, 8802, 8802, [8802])
    core = framing.read_one(framing.image_path(d, "core", pid), "core")
    assert core.mtype == core.X86_64 and core.tc.comm == "counter"
    assert core.thread_info.gpregs.orig_ax == 230  # stopped in clock_nanosleep
    assert len(core.tc.sigactions) == 62 and core.thread_core.rseq_entry.rseq_abi_size == 32
    inv = framing.read_one(str(d / "inventory.img"), "inventory")
    assert inv.img_version == magic.IMG_VERSION and inv.fdinfo_per_id

    mm = framing.read_one(framing.image_path(d, "mm", pid), "mm")
    files = {f.id: f for f in framing.read_image(str(d / "files.img"), "files")}
    assert files[mm.exe_file_id].reg.name == "/opt/crpy-fixtures/counter"
    ids = framing.read_one(framing.image_path(d, "ids", pid), "ids")
    fds = {e.fd: e for e in framing.read_image(framing.image_path(d, "fdinfo", ids.files_id), "fdinfo")}
    assert files[fds[3].id].reg.name == "/dev/null"
    assert fds[4].type == fds[5].type == 2  # the pipe's two ends
    ((pd, data),) = framing.read_payload_image(str(d / "pipes-data.img"), "pipes_data")
    assert data == b"in flight" and files[fds[4].id].pipe.pipe_id == pd.pipe_id

    # the 4 MiB malloc'ed buffer is an mmap'ed chunk (16-byte header) at the start of an anon VMA
    (heap,) = [v for v in mm.vmas if v.end - v.start > PATTERN_LEN and v.flags == 0x22]
    pages_id, runs = pages.page_runs(framing.read_image(framing.image_path(d, "pagemap", pid), "pagemap"))
    pages_path = framing.image_path(d, "pages", pages_id)
    pages.check_pages_file(pages_path, runs)
    saved = pages.read_range(pages_path, runs, heap.start + 16, PATTERN_LEN)
    # byte i = bits 13..20 of i * 2654435761: depends on i mod 2**21 only, so build 2 MiB twice
    half = bytes((i * 2654435761 >> 13) & 0xFF for i in range(1 << 21))
    expected = half * (PATTERN_LEN >> 21)
    assert saved == expected
    assert os.path.getsize(pages_path) == pages.data_size(runs)


def test_tree_facts():
    d = _fixture_dir("tree")
    parent, child = framing.read_image(str(d / "pstree.img"), "pstree")
    assert child.ppid == parent.pid and child.pgid == child.pid != parent.pgid
    assert child.sid == parent.sid
    shared = []
    for task in (parent, child):
        mm = framing.read_one(framing.image_path(d, "mm", task.pid), "mm")
        shared.append([v for v in mm.vmas if v.flags & 0x01 and v.end - v.start == 4096])  # MAP_SHARED
    assert len(shared[0]) == len(shared[1]) == 1 and shared[0][0].shmid == shared[1][0].shmid
    # MAP_SHARED anon memory is a memfd file in 4.x; its inode's shmid names the shmem pagemap
    files = {f.id: f for f in framing.read_image(str(d / "files.img"), "files")}
    (inode,) = framing.read_image(str(d / "memfd.img"), "memfd_inode")
    assert files[shared[0][0].shmid].memfd.inode_id == inode.inode_id
    shmid = inode.shmid
    head, *entries = framing.read_image(framing.image_path(d, "pagemap_shmem", shmid), "pagemap_shmem")
    assert [framing.pagemap_nr_pages(e) for e in entries] == [1]
    ((pd, data),) = framing.read_payload_image(str(d / "pipes-data.img"), "pipes_data")
    assert data == b"x"


def test_crpy_show_on_fixture_dirs():
    for name in ("counter", "tree"):
        d = _fixture_dir(name)
        res = subprocess.run([sys.executable, "-m", "crpy", "show", str(d)], cwd=REPO,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert len(doc) == len(list(d.iterdir()))
        by_name = {os.path.basename(k): v for k, v in doc.items()}
        assert by_name["inventory.img"]["entries"][0]["img_version"] == 2
        pages_docs = [v for k, v in by_name.items() if k.startswith("pages-")]
        assert pages_docs and all(v["magic"] == "PAGES" and v["pages"] * 4096 == v["size"] for v in pages_docs)


def test_crpy_show_file_pretty_and_errors(tmp_path):
    d = _fixture_dir("counter")
    res = subprocess.run([sys.executable, "-m", "crpy", "show", "--pretty", str(d / "pipes-data.img")],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"magic": "PIPES_DATA", "entries": [
        {"pipe_id": 2875545, "bytes": 9, "size": 65536, "payload_len": 9}]}
    bad = tmp_path / "core-1.img"
    bad.write_bytes(b"\x19\x43\x56\x54\x00")
    res = subprocess.run([sys.executable, "-m", "crpy", "show", str(bad)], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and str(bad) in res.stderr and "offset 4" in res.stderr


@pytest.mark.parametrize("name, want_fds", [("counter", 6), ("tree", 5)])
def test_fixture_programs_build_and_run(tmp_path, name, want_fds):
    """The programs the images were made of build from the sources kept beside them, and run
    as the README says: they write their pids to the state file and hold the files it names."""
    exe = build_c(tmp_path, name, FIXTURES / f"{name}.c")
    state = tmp_path / f"{name}.state"
    proc = start_target([exe, state], lambda: state.exists() and state.read_text().endswith("\n"),
                        what=f"fixture program {name}")
    try:
        pids = [int(w) for w in state.read_text().split()]
        assert pids[0] == proc.pid and len(pids) == (2 if name == "tree" else 1)
        # the state file's text is there before its fclose() closes the fd: count once the
        # program sleeps in its loop (counter: nanosleep, tree: pause)
        wait_for(lambda: any(sleeps_in(proc.pid, nr) for nr in (NR_PAUSE, NR_NANOSLEEP, NR_CLOCK_NANOSLEEP)),
                 what=f"fixture program {name} asleep in its loop")
        fds = os.listdir(f"/proc/{proc.pid}/fd")
        assert len(fds) == want_fds, fds  # stdio, (/dev/null,) the pipe's two ends
        if name == "counter":
            assert os.readlink(f"/proc/{proc.pid}/fd/3") == "/dev/null"
    finally:
        for pid in [int(w) for w in state.read_text().split()] if state.exists() else [proc.pid]:
            kill_quietly(pid)
        proc.wait()
