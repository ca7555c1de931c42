"""Page data rates with the images on /dev/shm (a tmpfs with 4 KiB pages) and on a tmpfs this
benchmark mounts with huge=within_size, back to back: what the filesystem under -D does to the
page step (crpy.kernel.tmpfs).

Each round dumps a 1 GiB task into each place (the order alternating) and restores it from
there.  Printed per place, as medians over the rounds: the whole `crpy dump` and `crpy restore -d`,
and the page step alone, from crpy's own -v log (the dump's "pages" step time; the restored
task's "premapped N bytes in S s"), in GiB/s of page data, beside process_vm_readv of the same
task as the baseline.  `python3 -m bench.tmpfs_huge [reps]` (as root: it mounts a tmpfs)."""

import os
import re
import statistics
import subprocess
import sys

from bench import common

MIB = 1024
_DUMP_PAGES = re.compile(r"Step times \(ms wall/cpu, all tasks\):.* pages ([\d.]+)/")
_PREMAPPED = re.compile(r"premapped (\d+) bytes in ([\d.]+) s")


def run(reps):
    with common.child_subreaper(), common.work_dir("crpy-bench-huge-") as workdir:
        huge = os.path.join(workdir, "huge")
        os.mkdir(huge)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "huge=within_size,size=4g", "tmpfs", huge],
                           capture_output=True, text=True)
        if r.returncode:
            return [f"tmpfs huge pages: not measured: mount -t tmpfs -o huge=within_size failed: {r.stderr.strip()}"]
        try:
            with open(os.path.join(common.ROOT, "bench", "hold.c")) as f:
                exe = common.build_c(workdir, "hold", f.read(), "-O2")
            places = {"/dev/shm": "/dev/shm", "tmpfs huge=within_size": huge}
            got = {name: [] for name in places}
            bases = []
            for n in range(reps):
                names = list(places) if n % 2 == 0 else list(places)[::-1]
                for i, name in enumerate(names):     # the baseline once a round, of the first target
                    got[name].append(_one(exe, workdir, places[name], bases if i == 0 else None))
        finally:
            subprocess.run(["umount", huge], check=False)
    gib = MIB / 1024
    base = statistics.median(bases)
    lines = [f"tmpfs huge pages: {MIB} MiB task, {reps} rounds, medians; baseline process_vm_readv "
             f"{base:.3f} s ({gib / base:.2f} GiB/s)"]
    for name, rows in got.items():
        dump, dump_pages, restore, restore_pages = (statistics.median(r[k] for r in rows) for k in range(4))
        lines.append(f"  {name:24s} dump {dump:.3f} s, its page step {dump_pages:.3f} s ({gib / dump_pages:.2f} GiB/s); "
                     f"restore {restore:.3f} s, its page step {restore_pages:.3f} s ({gib / restore_pages:.2f} GiB/s)")
    shm, hp = got["/dev/shm"], got["tmpfs huge=within_size"]
    ratios = [statistics.median(b[k] / a[k] for a, b in zip(shm, hp)) for k in range(4)]
    lines.append(f"  huge/4 KiB, median of {reps} pairs: dump {ratios[0]:.2f}x (page step {ratios[1]:.2f}x), "
                 f"restore {ratios[2]:.2f}x (page step {ratios[3]:.2f}x)")
    return lines


def _one(exe, workdir, parent, bases):
    """(dump s, its page step s, restore s, its page step s) of a fresh target, images in `parent`;
    bases: a list to append the target's process_vm_readv baseline to, or None."""
    from bench.run import baseline_pvr

    pidfile = os.path.join(workdir, "hold.pid")
    proc = common.start_target([exe, str(MIB), pidfile], pidfile, "bench.tmpfs_huge: the target", timeout=120,
                               new_session=False)
    with common.image_dir("crpy-bench-") if parent == "/dev/shm" else common.work_dir("crpy-bench-", parent) as d:
        dump_log, restore_log = os.path.join(workdir, "dump.log"), os.path.join(workdir, "restore.log")
        with common.killed_after([proc.pid]):
            if bases is not None:
                bases.append(baseline_pvr(proc.pid, MIB))
            dump = common.crpy_seconds("bench.tmpfs_huge", "dump", "-v", "-o", dump_log, "-t", str(proc.pid), "-D", d)
            proc.wait()
            common.wait_gone([proc.pid])
            restore = common.crpy_seconds("bench.tmpfs_huge", "restore", "-v", "-o", restore_log, "-d", "-D", d)
        return dump, _logged_seconds(dump_log, _DUMP_PAGES) / 1e3, restore, _logged_seconds(restore_log, _PREMAPPED)


def _logged_seconds(path, pattern):
    with open(path) as f:
        found = pattern.findall(f.read())
    if not found:
        raise SystemExit(f"bench.tmpfs_huge: no {pattern.pattern!r} line in {path}")
    last = found[-1]
    return float(last[-1] if isinstance(last, tuple) else last)


if __name__ == "__main__":
    for line in run(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(line)
