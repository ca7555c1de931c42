"""Build the C blobs (parasite/) and ship them as Python modules: crpy/blobs/_NAME.py.

`python3 -m tools.build_blobs OUTDIR` (or build(outdir) from setup.py) runs `make -C parasite`,
then loads each parasite/build/NAME.elf with pyelftools into one flat image and writes
OUTDIR/_NAME.py holding:
    IMAGE     bytes: every allocated section copied to its address (bss excluded: zero)
    SIZE      int: bytes the blob occupies when loaded (end of bss, rounded up to 16)
    SYMBOLS   dict name -> offset of every named function/object symbol
    RELATIVE  list of (offset, addend): store base+addend as u64 at base+offset when loading
pyelftools is needed here only, never when crpy runs.  Any relocation other than
R_X86_64_RELATIVE means the blob is not position independent as loaded: the build fails.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARASITE_DIR = os.path.join(ROOT, "parasite")

R_X86_64_NONE = 0
R_X86_64_RELATIVE = 8
SHF_ALLOC = 0x2
SHF_TLS = 0x400


class BlobBuildError(Exception):
    """The blob does not build, or is not a loadable flat position-independent image."""


def _run_make():
    cmd = ["make", "-s", "-C", PARASITE_DIR]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise BlobBuildError(f"{' '.join(cmd)} failed:\n{res.stdout}{res.stderr}")
    listed = subprocess.run(cmd + ["list"], capture_output=True, text=True, check=True)
    return listed.stdout.split()


def _image_sections(elf):
    """Allocated sections that belong to the loaded image (relocation tables do not)."""
    for sec in elf.iter_sections():
        if not sec["sh_flags"] & SHF_ALLOC:
            continue
        if sec["sh_type"] in ("SHT_RELA", "SHT_REL"):
            continue
        if sec["sh_flags"] & SHF_TLS:
            raise BlobBuildError(f"section {sec.name}: thread-local storage is not allowed in a blob")
        yield sec


def _load_image(elf, path):
    end = 0
    sections = list(_image_sections(elf))
    for sec in sections:
        end = max(end, sec["sh_addr"] + sec["sh_size"])
    image = bytearray(end)
    file_end = 0
    for sec in sections:
        if sec["sh_type"] == "SHT_NOBITS" or sec["sh_size"] == 0:
            continue
        addr = sec["sh_addr"]
        image[addr:addr + sec["sh_size"]] = sec.data()
        file_end = max(file_end, addr + sec["sh_size"])
    if not sections:
        raise BlobBuildError(f"{path}: no allocated sections")
    size = (end + 15) & ~15
    return bytes(image[:file_end]), size


def _relocations(elf, path):
    relative = []
    for sec in elf.iter_sections():
        if sec["sh_type"] not in ("SHT_RELA", "SHT_REL"):
            continue
        for rel in sec.iter_relocations():
            kind = rel["r_info_type"]
            if kind == R_X86_64_NONE:
                continue
            if kind != R_X86_64_RELATIVE or sec["sh_type"] != "SHT_RELA":
                raise BlobBuildError(
                    f"{path}: relocation type {kind} at {rel['r_offset']:#x} in {sec.name}: "
                    "only R_X86_64_RELATIVE is allowed (is something built without -fPIE, "
                    "or an undefined/default-visibility symbol?)")
            relative.append((rel["r_offset"], rel["r_addend"]))
    return sorted(relative)


def _symbols(elf):
    """name -> offset; a name defined twice at different places (two statics) is dropped."""
    found, clash = {}, set()
    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        return found
    for sym in symtab.iter_symbols():
        if not sym.name or sym["st_info"]["type"] not in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
            continue
        if sym["st_shndx"] in ("SHN_UNDEF", "SHN_ABS") and sym.name != "__blob_start":
            if sym["st_shndx"] == "SHN_UNDEF" and sym["st_info"]["bind"] != "STB_WEAK":
                raise BlobBuildError(f"undefined symbol {sym.name}")
            continue
        value = sym["st_value"]
        if sym.name in found and found[sym.name] != value:
            clash.add(sym.name)
        found[sym.name] = value
    for name in clash:
        del found[name]
    return dict(sorted(found.items()))


def elf_to_blob(path):
    """Parse one linked blob ELF -> dict(IMAGE, SIZE, SYMBOLS, RELATIVE)."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_X86_64":
            raise BlobBuildError(f"{path}: not an x86_64 ELF")
        for seg in elf.iter_segments():
            if seg["p_type"] == "PT_INTERP":
                raise BlobBuildError(f"{path}: has an interpreter; link with --no-dynamic-linker")
        image, size = _load_image(elf, path)
        relative = _relocations(elf, path)
        symbols = _symbols(elf)
    for off, _ in relative:
        if off + 8 > len(image):
            raise BlobBuildError(f"{path}: relocation at {off:#x} outside the image")
    return {"IMAGE": image, "SIZE": size, "SYMBOLS": symbols, "RELATIVE": relative}


def _module_text(name, blob):
    lines = [
        f'"""Generated by tools/build_blobs.py from parasite/{name}.c: do not edit."""',
        "",
        f"SIZE = {blob['SIZE']}",
        f"SYMBOLS = {blob['SYMBOLS']!r}",
        f"RELATIVE = {blob['RELATIVE']!r}",
        "IMAGE = (",
    ]
    image = blob["IMAGE"]
    for i in range(0, len(image), 32):
        lines.append(f"    {image[i:i + 32]!r}")
    lines.append(")")
    if not image:
        lines[-2:] = ["IMAGE = b''"]
    return "\n".join(lines) + "\n"


def build(outdir):
    """Build every blob present in parasite/ and write OUTDIR/_NAME.py; returns the names."""
    names = _run_make()
    os.makedirs(outdir, exist_ok=True)
    for name in names:
        blob = elf_to_blob(os.path.join(PARASITE_DIR, "build", f"{name}.elf"))
        tmp = os.path.join(outdir, f"_{name}.py.tmp")
        with open(tmp, "w") as f:
            f.write(_module_text(name, blob))
        os.replace(tmp, os.path.join(outdir, f"_{name}.py"))
    return names


def main(argv):
    if len(argv) != 2:
        print("usage: python3 -m tools.build_blobs OUTDIR", file=sys.stderr)
        return 2
    try:
        names = build(argv[1])
    except BlobBuildError as e:
        print(f"build_blobs: {e}", file=sys.stderr)
        return 1
    print(f"build_blobs: {', '.join(names) or 'nothing'} -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
