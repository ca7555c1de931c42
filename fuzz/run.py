"""Driver of the image fuzzing: `python3 -m fuzz.run [--runs N] [--seed S] [--only TARGET]`.

It makes the real dumps the inputs are mutated from -- crpy dumps of the two CRIU fixture
programs (tests/fixtures/criu-4.2/counter.c, tree.c), built and started here, plus CRIU 4.2's
own images of them (the fixtures) -- then, for each fuzz target (fuzz.targets) and each image
type, runs atheris in a child process (`--child`): libFuzzer's coverage-guided loop, with
fuzz.protomut's structure-aware mutator mixed with atheris' byte mutations, -runs inputs, a fixed
-seed, a 10 s per-input timeout (a hang is a failure).  An input that makes a reader fail other
than with a one-line CrpyError is saved in $TMPDIR/crpy-fuzz-crashes/ (one per distinct place it failed) with
its traceback; the summary gives inputs, refusals and crashes per target and image type.  Exit 1
on any crash, hang or process left running.  `make fuzz` runs a short pass.
"""

import argparse
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "criu-4.2")
CRASH_DIR = os.path.join(tempfile.gettempdir(), "crpy-fuzz-crashes")   # kept after the run
MAX_LEN = 1 << 16
# kinds the load target mutates in the counter dump (those a restore reads before forking)
LOAD_KINDS = ("inventory", "pstree", "core", "ids", "mm", "pagemap", "files", "fdinfo", "fs", "cpuinfo",
              "digests")
CPUINFO_KINDS = ("cpuinfo", "core")
_READERS = ("crpy.images.framing", "crpy.images.magic")
_LOADERS = _READERS + ("crpy.cpuinfo", "crpy.images.xsave", "crpy.images.digest", "crpy.restore.load",
                       "crpy.restore.task_state", "crpy.restore.threads", "crpy.restore.tree",
                       "crpy.resources.fdtable")
INSTRUMENTED = {"framing": _READERS, "show": _READERS + ("crpy.images.show",), "load": _LOADERS,
                "cpuinfo": _LOADERS}


# ------------------------------------------------------------------------------- the dumps

def _start_and_dump(workdir, name, nr_pids):
    """Build tests/fixtures/criu-4.2/NAME.c, start it, crpy-dump it; the images dir, or None."""
    exe = os.path.join(workdir, name)
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(FIXTURES, name + ".c")], check=True)
    state = os.path.join(workdir, name + ".state")
    proc = subprocess.Popen([exe, state], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, cwd=workdir)
    images = os.path.join(workdir, name + "-dump")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = open(state).read() if os.path.exists(state) else ""
            if text.endswith("\n") and len(text.split()) == nr_pids:
                break
            time.sleep(0.02)
        r = subprocess.run([sys.executable, "-m", "crpy", "dump", "-t", str(proc.pid), "-D", images],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
        if r.returncode:
            print(f"fuzz: crpy dump of {name} failed: {r.stderr.strip()}", file=sys.stderr)
            return None
        return images
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)       # dumped: gone already; failed: not left running
        except ProcessLookupError:
            pass
        proc.wait()


def _framed_files(directory):
    from crpy.images import magic

    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        k = magic.kind_by_filename(os.path.basename(path))
        if k is not None and k.magic is not None:
            out.setdefault(k.name, []).append(path)
    return out


def seed_sets(workdir):
    """{kind: [seed files]} from the real dumps (the samples only for kinds no dump holds), and
    {label: directory} of the crpy dumps the load target mutates ("" the counter, "@tree" the
    tree: two tasks sharing memory; none if crpy could not dump here)."""
    counter = _start_and_dump(workdir, "counter", 1)
    tree = _start_and_dump(workdir, "tree", 2)
    load_dirs = {"": counter, "@tree": tree}
    sets = {}
    for d in filter(None, (counter, tree, os.path.join(FIXTURES, "counter-images"),
                           os.path.join(FIXTURES, "tree-images"))):
        for kind, files in _framed_files(d).items():
            sets.setdefault(kind, []).extend(files)
    sys.path.insert(0, ROOT)
    from tests.unit.crhelpers import image_samples

    samples_dir = os.path.join(workdir, "samples")
    os.makedirs(samples_dir)
    for kind, path in image_samples().write_all(samples_dir).items():
        if kind not in sets:
            sets[kind] = [path]
    return sets, {label: d for label, d in load_dirs.items() if d is not None}


# ------------------------------------------------------------------------------- the child

def _payload_len(kind):
    from crpy.images import framing, magic

    k = magic.kind(kind)
    if not k.payload:
        return None

    def payload_len(entry, index):
        is_head = k.head and index == 0
        try:
            msg = framing.message_class(k.head if is_head else k.entry).FromString(entry)
        except Exception:  # noqa: BLE001 - not an entry: no payload
            return 0
        if is_head:
            return None if k.tail and not getattr(msg, "chunks", False) else 0
        return getattr(msg, k.payload)
    return payload_len


def _signature(exc):
    """Where an exception came from: its type and the innermost crpy frame."""
    if isinstance(exc, AssertionError):      # the oracle's verdict: what it says, without the paths
        return f"{type(exc).__name__}:{str(exc).split(':')[0]}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/crpy/" in f.filename]
    where = f"{os.path.relpath(frames[-1].filename, ROOT)}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__}@{where}"


def child(args):
    import atheris

    import importlib

    with atheris.instrument_imports(include=["crpy"]):    # what the target reads with: its coverage
        for module in INSTRUMENTED[args.target]:
            importlib.import_module(module)
    from crpy.errors import ImageError
    from fuzz import protomut, targets

    workdir = tempfile.mkdtemp(prefix="target-", dir=args.workdir)   # the parent removes it
    kind = args.kind.split("@")[0]           # pstree@tree: the pstree.img of the tree dump
    target = targets.TARGETS[args.target](kind, args.name, workdir, args.base)
    stats = {"inputs": 0, "accepted": 0, "refused": 0, "no_offset": 0, "crashes": 0, "signatures": [],
             "no_offset_samples": []}

    def save_stats():
        with open(args.stats, "w") as f:
            json.dump(stats, f)

    def test_one(data):
        stats["inputs"] += 1
        try:
            error = target.run(data)
            targets.check_outcome(target, error)
            stats["refused" if error else "accepted"] += 1
            if isinstance(error, ImageError) and error.offset is None:
                stats["no_offset"] += 1
                what = re.sub(r"\d+|0x[0-9a-f]+", "N", str(error).replace(target.dir + "/", ""))[:90]
                if len(stats["no_offset_samples"]) < 8 and what not in stats["no_offset_samples"]:
                    stats["no_offset_samples"].append(what)
        except Exception as e:  # noqa: BLE001 - the crash, recorded, then on to the next input
            stats["crashes"] += 1
            sig = _signature(e)
            if sig not in stats["signatures"]:
                stats["signatures"].append(sig)
                base = os.path.join(CRASH_DIR, f"{args.target}-{args.kind}-"
                                    f"{hashlib.sha1(sig.encode()).hexdigest()[:10]}")
                os.makedirs(CRASH_DIR, exist_ok=True)
                with open(base + ".bin", "wb") as f:
                    f.write(data)
                with open(base + ".txt", "w") as f:
                    f.write(f"{args.target} {args.kind} {args.name}\n{sig}\n")
                    f.write("".join(traceback.format_exception(e)))
            save_stats()
        if stats["inputs"] % 64 == 0:
            save_stats()

    def byte_mutate(data, max_size):     # atheris.Mutate exists only once Fuzz() runs
        return atheris.Mutate(data, max_size)

    save_stats()
    os.makedirs(CRASH_DIR, exist_ok=True)
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed}", "-timeout=10",
                   f"-max_len={MAX_LEN}", "-rss_limit_mb=2048", "-print_final_stats=0", f"-max_total_time={args.max_time}",
                   f"-artifact_prefix={CRASH_DIR}/{args.target}-{args.kind}-", args.corpus],
                  test_one, custom_mutator=protomut.custom_mutator(_payload_len(kind), byte_mutate))
    atheris.Fuzz()


# ------------------------------------------------------------------------------ the parent

def _jobs(sets, load_dirs, only, kinds):
    """(target, kind[@dump], seed files, base directory, file name) of every run."""
    jobs = []
    for kind in sorted(sets):
        for target in ("framing", "show"):
            jobs.append((target, kind, sets[kind], None, os.path.basename(sets[kind][0])))
    for label, base in load_dirs.items():
        files = _framed_files(base)
        for target, target_kinds in (("load", LOAD_KINDS + ("pagemap_shmem",)), ("cpuinfo", CPUINFO_KINDS)):
            if label and target == "cpuinfo":
                continue
            for kind in target_kinds:
                if kind in files:
                    name = os.path.basename(files[kind][-1])       # the tree's child, in the tree
                    seeds = [files[kind][-1]] + ([] if target == "load" else sets[kind])
                    jobs.append((target, kind + label, seeds, base, name))
    return [j for j in jobs if (not only or j[0] in only) and (not kinds or j[1].split("@")[0] in kinds)]


def _children_left():
    me, left = str(os.getpid()), []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:
            left.append(stat.split("/")[2])
    return left


def parent(args):
    workdir = tempfile.mkdtemp(prefix="crpy-fuzz-")
    try:
        sets, load_dirs = seed_sets(workdir)
        if not load_dirs:
            print("fuzz: no crpy dump could be made here: the load and cpuinfo targets are skipped",
                  file=sys.stderr)
        failures, rows = 0, []
        t0 = time.monotonic()
        for target, kind, seeds, base, name in _jobs(sets, load_dirs, args.only, args.kinds):
            corpus = os.path.join(workdir, f"corpus-{target}-{kind}")
            os.makedirs(corpus)
            for i, s in enumerate(seeds):
                shutil.copy(s, os.path.join(corpus, f"seed{i}"))
            stats_path = os.path.join(workdir, f"stats-{target}-{kind}.json")
            cmd = [sys.executable, "-m", "fuzz.run", "--child", "--target", target, "--kind", kind,
                   "--name", name, "--corpus", corpus, "--stats", stats_path, "--runs", str(args.runs),
                   "--seed", str(args.seed), "--max-time", str(args.max_time), "--workdir", workdir]
            if base:
                cmd += ["--base", base]
            with open(os.path.join(workdir, f"log-{target}-{kind}"), "w+") as log:
                try:
                    r = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                       timeout=args.max_time + 120)
                except subprocess.TimeoutExpired:    # libFuzzer's own -timeout did not end it: a hang
                    r = subprocess.CompletedProcess(cmd, "HANG (killed)")
                log.seek(0)
                text = log.read()
            stats = json.load(open(stats_path))
            done = re.findall(r"Done (\d+) runs", text)
            hang = "timeout" in text and "ALARM" in text
            bad = r.returncode != 0 or stats["crashes"] or hang
            failures += bool(bad)
            rows.append((target, kind, int(done[-1]) if done else stats["inputs"], stats["refused"],
                         stats["no_offset"], stats["crashes"], ",".join(stats["signatures"]) or
                         ("HANG" if hang else f"exit {r.returncode}" if r.returncode else "")))
            print("%-8s %-14s %7d inputs %7d refused %6d without offset %4d crashes %s" % rows[-1],
                  flush=True)
            for what in stats["no_offset_samples"] if args.verbose else ():
                print(f"    without offset: {what}")
            if r.returncode and not stats["crashes"]:
                print(text[-3000:], file=sys.stderr)
        left = _children_left()
        if left:
            print(f"fuzz: processes left running: {left}", file=sys.stderr)
            failures += 1
        print(f"fuzz: {len(rows)} runs, {sum(r[2] for r in rows)} inputs, {failures} failing, "
              f"{time.monotonic() - t0:.0f} s")
        return 1 if failures else 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m fuzz.run", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10000, help="inputs per target and image type")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-time", type=int, default=600, help="seconds per target and image type at most")
    p.add_argument("--only", action="append", help="only this target (framing, show, load, cpuinfo)")
    p.add_argument("--kinds", type=lambda text: text.split(","), help="only these image kinds (core,mm,...)")
    p.add_argument("--verbose", action="store_true", help="list the refusals without an offset")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for opt in ("--target", "--kind", "--name", "--corpus", "--stats", "--base", "--workdir"):
        p.add_argument(opt, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child(args)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz: skipped: atheris is not installed (python3 -m pip install atheris)")
        return 0
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
