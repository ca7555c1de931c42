"""cpuinfo.img on real dumps: the dump records this CPU's XSAVE features and layout; a restore
refuses, before anything is forked, images that need a feature this CPU lacks (a bit added to a
real cpuinfo.img), and restores images from a CPU with fewer features (AVX-512 and PKRU state
taken out of a real dump, as an AMD machine without them would have written it)."""

import os
import subprocess

import pytest

from crpy import cpuinfo
from crpy.images import digest, framing, xsave
from crpy.kernel import cpuid
from tests.unit.crhelpers import image_samples
from tests.zdtm import harness

pytestmark = pytest.mark.usefixtures("subreaper")
AMX = 1 << 17 | 1 << 18
APX = 1 << 19


@pytest.fixture
def dumped(dump_test):
    """The fpu test (x87 and SSE state it checks itself) dumped into tmp_path/images."""
    return dump_test("fpu")


def _edit_cpuinfo(images, change):
    path = framing.image_path(images, "cpuinfo")
    entry = framing.read_one(path, "cpuinfo")
    change(entry.x86_entry[0])
    framing.write_image(path, "cpuinfo", [entry])
    digest.write_digests(images)     # as a dump on such a CPU would: intact, only different


def _crpy(*args):
    return subprocess.run(harness.crpy_command(*args), cwd=harness.REPO, env=harness.crpy_env(),
                          capture_output=True, text=True, timeout=120)


def test_dump_records_this_cpu(dumped):
    _, images = dumped
    path = framing.image_path(images, "cpuinfo")
    (x86,) = framing.read_one(path, "cpuinfo").x86_entry
    # this CPU's features, but those an image has no field for (AMX's, whose state a dump refuses)
    stored = xsave.stored_layout(cpuid.xsave_layout())
    assert x86.xfeatures_mask == cpuid.xcr0() & xsave.layout_mask(stored)
    assert x86.xsave_size == xsave.layout_size(stored) <= cpuid.xsave_size()
    assert cpuinfo.image_layout(x86) == stored
    assert len(x86.capability) == 19 and x86.capability[0] & 1     # word 0 bit 0: FPU
    crit = image_samples().crit_decode(path)                      # crit reads it, CRIU's fields alike
    assert crit["magic"] == "CPUINFO"
    assert crit["entries"][0]["x86_entry"][0]["xfeatures_mask"] == x86.xfeatures_mask
    res = _crpy("cpuinfo", "check", "-D", images)
    assert res.returncode == 0 and "every XSAVE feature" in res.stdout, res.stderr


def test_restore_refuses_a_feature_this_cpu_lacks(dumped):
    test, images = dumped
    # a feature this CPU lacks: PKRU, else AMX, else APX (XSAVE component 19)
    lacking = next(bit for bit in (1 << 9, AMX, APX) if not cpuid.xcr0() & bit)
    name = {1 << 9: "pkru", AMX: "amx", APX: "apx"}[lacking]
    _edit_cpuinfo(images, lambda x86: setattr(x86, "xfeatures_mask", x86.xfeatures_mask | lacking))
    res = _crpy("restore", "-D", images, "-d", "-v4", "-o", "restore.log")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert f"XSAVE state of {name}" in lines[0] and "which this CPU lacks" in lines[0], lines[0]
    assert not os.path.exists(f"/proc/{test.pid}")
    log = open(os.path.join(images, "restore.log")).read()
    assert "read images of" not in log, "the refusal must come before the images are even loaded"
    res = _crpy("cpuinfo", "check", "-D", images)
    assert res.returncode == 1 and name in res.stderr, res.stderr


def test_images_of_a_cpu_with_fewer_features_restore(dumped):
    """Only x87, SSE and AVX in the images, at another machine's offsets: this CPU (which may have
    AVX-512 and PKRU) restores them, its extra state in its init state; the test checks its x87
    and SSE state itself."""
    test, images = dumped
    core_path = framing.image_path(images, "core", test.pid)
    core = framing.read_one(core_path, "core")
    for field in ("bndreg_state", "bndcsr_state", "opmask_reg", "zmm_upper", "hi16_zmm", "pkru"):
        core.thread_info.fpregs.xsave.ClearField(field)
    core.thread_info.fpregs.xsave.xstate_bv &= 0b111
    framing.write_image(core_path, "core", [core])

    def fewer(x86):
        x86.xfeatures_mask, x86.xsave_size = 0b111, 832
        del x86.xsave_components[:]
        x86.xsave_components.add(feature=2, offset=576, size=256)
    _edit_cpuinfo(images, fewer)
    harness.restore(images, test.pid)
    passed, reason = test.stop()
    assert passed, f"{reason}\n{test.outfile_text()}"
