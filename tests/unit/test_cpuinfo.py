"""crpy.cpuinfo without a dump: which images a CPU layout can take, and the layout an image was
taken in (crpy's recorded offsets, or the standard ones for CRIU's cpuinfo.img, which has none)."""

from crpy import cpuinfo
from crpy.images import framing
from crpy.kernel import cpuid
from tests.unit.crhelpers import image_samples

S = image_samples()
INTEL_AMX = {**S.INTEL_AVX512_PKRU, 17: (2752, 64), 18: (2816, 8192)}      # Sapphire Rapids on
AMD_ZEN4 = {0: (0, 160), 1: (160, 256), 2: (576, 256), 5: (832, 64), 6: (896, 512), 7: (1408, 1024)}


def _x86(layout=S.INTEL_AVX512_PKRU, offsets=True):
    x86 = S.cpuinfo_entry(layout).x86_entry[0]
    if not offsets:                    # as CRIU writes it
        del x86.xsave_components[:]
    return x86


def test_this_cpu_takes_its_own_images(tmp_path):
    cpuinfo.write(tmp_path)
    x86 = cpuinfo.read(tmp_path)
    assert cpuinfo.image_layout(x86) == cpuinfo.stored_layout()
    assert cpuinfo.incompatibility(x86, cpuid.xsave_layout()) is None
    assert framing.read_one(framing.image_path(tmp_path, "cpuinfo"), "cpuinfo").x86_entry[0] == x86


def test_missing_features_are_named():
    why = cpuinfo.incompatibility(_x86(), AMD_ZEN4)
    assert "XSAVE state of pkru (xfeatures 0x2e7)" in why and "this CPU lacks (xfeatures 0xe7)" in why
    why = cpuinfo.incompatibility(_x86(), {k: v for k, v in AMD_ZEN4.items() if k < 5})
    assert "avx512, pkru" in why
    assert cpuinfo.incompatibility(_x86(AMD_ZEN4), S.INTEL_AVX512_PKRU) is None   # more features: fine


def test_criu_cpuinfo_without_offsets():
    x86 = _x86(offsets=False)
    assert cpuinfo.image_layout(x86) == S.INTEL_AVX512_PKRU          # the standard offsets
    assert cpuinfo.incompatibility(x86, S.INTEL_AVX512_PKRU) is None
    assert "pkru" in cpuinfo.incompatibility(x86, AMD_ZEN4)


def test_a_component_of_another_size_is_refused():
    x86 = _x86(AMD_ZEN4)
    x86.xsave_components[1].size = 128          # opmask
    assert "avx512 has another size" in cpuinfo.incompatibility(x86, S.INTEL_AVX512_PKRU)


def test_no_cpuinfo_image(tmp_path):
    assert cpuinfo.read(tmp_path) is None
    cpuinfo.check_images(tmp_path)              # older images: each task's state is checked alone


def test_images_of_an_amx_cpu_need_no_amx(monkeypatch):
    """AMX state is never in an image (a dump refuses a task using it): a CPU with AMX records
    the features of what its images hold, and they restore on a CPU without AMX."""
    monkeypatch.setattr(cpuinfo, "this_cpu_layout", lambda: INTEL_AMX)
    cpuinfo.stored_layout.cache_clear()
    try:
        x86 = cpuinfo.this_cpu_entry().x86_entry[0]
        assert x86.xfeatures_mask == 0x2e7 and x86.xsave_size == 2696
        assert 17 not in cpuinfo.image_layout(x86) and 18 not in cpuinfo.image_layout(x86)
        assert cpuinfo.incompatibility(x86, S.INTEL_AVX512_PKRU) is None
        assert cpuinfo.frame_xsave.__wrapped__() == (2696, 0x2e7)   # the restore's signal frames
    finally:
        cpuinfo.stored_layout.cache_clear()
