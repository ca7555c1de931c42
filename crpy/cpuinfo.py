"""cpuinfo.img: which CPU the images were dumped on, and which XSAVE state their tasks hold.

The dump writes it (CRIU's cpuinfo_entry: vendor, signature, feature words, model name, the XSAVE
features XCR0 enables that an image can hold and their sizes -- as CRIU, not AMX's --, plus crpy's
field with each component's offset).  A restore reads it first, before anything is forked: a CPU
that lacks an XSAVE feature of the images (their registers would come back different) is refused
in one line naming the features; a CPU with more features is fine (the extra state starts in its
init state).  `crpy cpuinfo dump|check` as criu.
"""

import functools
import os

from crpy.errors import ImageError, RestoreError
from crpy.log import log

CAPABILITY_VER = 2        # compel's 19 feature words
_VENDORS = {"GenuineIntel": 1, "AuthenticAMD": 2}


def this_cpu_layout():
    """The standard-format XSAVE layout of the CPU crpy runs on."""
    from crpy.kernel import cpuid

    return cpuid.xsave_layout()


@functools.lru_cache(maxsize=None)
def stored_layout():
    """The XSAVE layout of the state the images of this CPU hold (this CPU's, without the
    components an image has no field for: AMX tiles, which a dump refuses in use) and of the
    signal frames a restore builds."""
    from crpy.images import xsave

    return xsave.stored_layout(this_cpu_layout())


@functools.lru_cache(maxsize=None)
def frame_xsave():
    """(size, xfeatures) of the XSAVE area of the signal frames a restore builds (stored_layout:
    the kernel takes no bigger one from a task that never used AMX, see xsave.DYNAMIC_COMPONENTS)."""
    from crpy.images import xsave

    return xsave.layout_size(stored_layout()), xsave.layout_mask(stored_layout())


def this_cpu_entry():
    """cpuinfo_entry of the CPU crpy runs on."""
    from crpy.images import xsave
    from crpy.images.pb import cpuinfo_pb2
    from crpy.kernel import cpuid

    family, model, stepping = cpuid.signature()
    layout = stored_layout()
    x86 = cpuinfo_pb2.cpuinfo_x86_entry(
        vendor_id=_VENDORS.get(cpuid.vendor(), 0), cpu_family=family, model=model, stepping=stepping,
        capability_ver=CAPABILITY_VER, capability=cpuid.capability_words(), model_id=cpuid.model_name(),
        xfeatures_mask=xsave.layout_mask(layout), xsave_size=xsave.layout_size(layout),
        xsave_size_max=cpuid.xsave_size_max())
    for comp, (offset, size) in sorted(layout.items()):
        if comp >= 2:
            x86.xsave_components.add(feature=comp, offset=offset, size=size)
    return cpuinfo_pb2.cpuinfo_entry(x86_entry=[x86])


def write(images_dir):
    """Write images_dir/cpuinfo.img for this CPU."""
    from crpy.images import framing

    framing.write_image(framing.image_path(images_dir, "cpuinfo"), "cpuinfo", [this_cpu_entry()])


def read(images_dir):
    """The cpuinfo_x86_entry of images_dir, or None when the dump wrote none (older images)."""
    from crpy.images import framing

    path = framing.image_path(images_dir, "cpuinfo")
    if not os.path.exists(path):
        return None
    entry = framing.read_one(path, "cpuinfo")
    if len(entry.x86_entry) != 1:
        raise framing.entry_error(path, f"{len(entry.x86_entry)} x86 entries, expected one")
    return entry.x86_entry[0]


def image_layout(x86):
    """The XSAVE layout the images were taken in: the recorded offsets, or (CRIU's cpuinfo.img
    records none) the standard offsets of the components in xfeatures_mask."""
    from crpy.images import xsave

    if x86.xsave_components:
        layout = dict(xsave.LEGACY_LAYOUT)
        layout.update({c.feature: (c.offset, c.size) for c in x86.xsave_components})
        return layout
    return xsave.standard_layout(x86.xfeatures_mask | 0b11)


def incompatibility(x86, cpu_layout):
    """None if a CPU with cpu_layout can take the images' XSAVE state, else one sentence why."""
    from crpy.images import xsave

    missing_mask = x86.xfeatures_mask & ~xsave.layout_mask(cpu_layout)
    if missing_mask:
        names = ", ".join(xsave.feature_names(missing_mask))
        return (f"the images hold XSAVE state of {names} (xfeatures {x86.xfeatures_mask:#x}), "
                f"which this CPU lacks (xfeatures {xsave.layout_mask(cpu_layout):#x})")
    if x86.xsave_components:
        _, resized = xsave.compare(image_layout(x86), cpu_layout)
        if resized:
            names = ", ".join(xsave.feature_names(sum(1 << c for c in resized)))
            return f"the XSAVE state of {names} has another size on this CPU than in the images"
    return None


def check_images(images_dir):
    """Refuse (RestoreError, one line) images whose XSAVE state this CPU cannot hold."""
    x86 = read(images_dir)
    if x86 is None:
        log.info("no cpuinfo.img in %s: each task's XSAVE state is checked on its own", images_dir)
        return
    why = incompatibility(x86, this_cpu_layout())
    if why:
        raise RestoreError(f"cannot restore {images_dir} on this CPU: {why}",
                           "restore on a CPU with these features")
    log.info("cpuinfo: this CPU has every XSAVE feature of the images (xfeatures %#x)", x86.xfeatures_mask)


def run(action, images_dir):
    """`crpy cpuinfo dump|check -D DIR`; returns the exit code."""
    if action == "dump":
        from crpy.images.create import make_images_dir

        make_images_dir(images_dir)
        write(images_dir)
        print(f"cpuinfo of this CPU written to {os.path.join(images_dir, 'cpuinfo.img')}")
        return 0
    if read(images_dir) is None:
        from crpy.images import framing

        raise ImageError(framing.image_path(images_dir, "cpuinfo"), "no such image")
    check_images(images_dir)
    print("this CPU has every XSAVE feature the images need")
    return 0
