"""Debian's crit (criu 3.17) reads every image crpy writes, and sees the values crpy wrote.

crit only knows the 3.17 schema: it drops the 4.x fields (they are listed in
test_images_samples.NEWER_THAN_CRIT), and shows pagemap field 2 under the name nr_pages."""

import shutil
import subprocess

import pytest

from crpy.images import framing, magic, show
from tests.unit.crhelpers import image_samples


S = image_samples()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("crit")
    return d, S.write_all(d)


@pytest.mark.parametrize("kind", sorted(set(S.samples()) - set(S.CRPY_ONLY)))
def test_crit_decodes_what_crpy_writes(written, kind):
    _, paths = written
    crit = S.crit_decode(paths[kind])
    ours = show.decode_file(paths[kind])
    assert crit["magic"] == ours["magic"] == magic.CRIT_NAMES[kind]
    assert len(crit["entries"]) == len(ours["entries"]) == len(S.samples()[kind])
    S.assert_matches_crit(crit, ours, kind, ours["magic"])


def test_crit_sees_the_registers_and_vmas(written):
    _, paths = written
    core = S.crit_decode(paths["core"])["entries"][0]
    ti = core["thread_info"]
    assert ti["gpregs"]["orig_ax"] == 230 and ti["gpregs"]["cs"] == 0x33
    assert len(ti["fpregs"]["xmm_space"]) == 64 and len(ti["fpregs"]["xsave"]["ymmh_space"]) == 64
    assert core["tc"]["comm"] == "counter" and len(core["tc"]["sigactions"]) == 62
    assert core["thread_core"]["rseq_entry"]["signature"] == 0x53053053
    mm = S.crit_decode(paths["mm"])["entries"][0]
    assert [v["start"] for v in mm["vmas"]] == [v.start for v in S.mm_entry().vmas]
    assert mm["vmas"][0]["fd"] == -1
    pm = S.crit_decode(paths["pagemap"])["entries"]
    assert pm[0] == {"pages_id": 1} and [e["nr_pages"] for e in pm[1:]] == [1, 33, 1024, 2]
    files = S.crit_decode(paths["files"])["entries"]
    assert files[1]["reg"]["name"] == "/tmp/log.txt" and files[1]["reg"]["pos"] == 1234
    usk = [f["usk"] for f in files if "usk" in f]
    assert [u["state"] for u in usk] == [1, 10] and usk[1]["backlog"] == 17       # TCP_ESTABLISHED, TCP_LISTEN
    assert usk[1]["name"] == "/run/crpy.sock"
    assert usk[1]["file_perms"]["mode"] == 0o140640 and usk[1]["opts"]["so_snd_tmo_usec"] == 252000
    queues = S.crit_decode(paths["sk_queues"])["entries"]
    assert [(q["id_for"], q["length"]) for q in queues] == [(6, 11), (6, 2), (15, 0)]


def test_crit_show_pretty(written):
    _, paths = written
    crit = shutil.which("crit")
    assert crit, "crit (Debian package criu) is not installed"
    res = subprocess.run([crit, "show", paths["core"]], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert '"magic": "CORE"' in res.stdout and '"comm": "counter"' in res.stdout


@pytest.mark.parametrize("what", ["ps", "fds", "mems", "rss"])
def test_crit_explores_the_dump_directory(written, what):
    """crit x DIR ... follows the ids between images: pstree -> core/ids -> fdinfo -> files, mm -> pagemap."""
    d, _ = written
    crit = shutil.which("crit")
    assert crit, "crit (Debian package criu) is not installed"
    res = subprocess.run([crit, "x", str(d), what], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert str(S.PID) in out and str(S.PID + 1) in out
    if what == "ps":
        assert "counter" in out and "child" in out
    if what == "fds":
        assert "/tmp/log.txt" in out and "/dev/null" in out and "pipe[2875545]" in out and "cwd: /" in out
    if what == "mems":
        assert "/opt/crpy/counter" in out


_MEMFD_HOLDER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    int fd = memfd_create("crpy-crit", MFD_ALLOW_SEALING);
    pwrite(fd, "memfd data", 10, 2 * 4096);
    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK);
    lseek(fd, 77, SEEK_SET);
    FILE *f = fopen(argv[1], "w");
    fputs("ready", f);
    fclose(f);
    for (;;)
        pause();
}
"""


def test_crit_reads_a_dumped_memfd(tmp_path):
    """A real dump of a memfd holder: files.img (MEMFD entry), memfd.img (the inode) and its
    contents in pagemap-shmem-SHMID.img + pages, as crit decodes them; crit x follows the fd."""
    import os

    from tests.unit.crhelpers import build_c, crpy, wait_for

    exe = build_c(tmp_path, "memfd_holder", _MEMFD_HOLDER)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([exe, str(ready)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    images = tmp_path / "img"
    try:
        wait_for(ready.exists, what="the memfd holder")
        ino = next(os.stat(f"/proc/{proc.pid}/fd/{n}").st_ino for n in os.listdir(f"/proc/{proc.pid}/fd")
                   if os.readlink(f"/proc/{proc.pid}/fd/{n}").startswith("/memfd:crpy-crit"))
        res = crpy("dump", "-t", proc.pid, "-D", images, "-R")
        assert res.returncode == 0, res.stderr
    finally:
        proc.kill()
        proc.wait()
    files = [e for e in S.crit_decode(images / "files.img")["entries"] if e["type"] == "MEMFD"]
    assert len(files) == 1 and files[0]["memfd"]["pos"] == 77
    inode, = S.crit_decode(images / "memfd.img")["entries"]
    assert S.crit_decode(images / "memfd.img")["magic"] == "MEMFD_INODE"
    assert inode["name"] == "crpy-crit" and inode["size"] == 2 * 4096 + 10 and inode["shmid"] == ino
    assert inode["seals"] == 2 and inode["inode_id"] == files[0]["memfd"]["inode_id"]   # F_SEAL_SHRINK
    pm = S.crit_decode(images / f"pagemap-shmem-{ino}.img")["entries"]
    assert [(e["vaddr"], e["nr_pages"]) for e in pm[1:]] == [(2 * 4096, 1)]
    pages = (images / f"pages-{pm[0]['pages_id']}.img").read_bytes()
    assert pages[:10] == b"memfd data" and len(pages) == 4096
    res = subprocess.run([shutil.which("crit"), "x", str(images), "fds"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0 and f"MEMFD.{files[0]['id']}" in res.stdout, res.stderr


_EVENT_FDS_HOLDER = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    sigset_t mask;
    struct itimerspec its = { { 3600, 0 }, { 3600, 0 } };
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1234 };
    int efd = eventfd(7, EFD_NONBLOCK), tfd = timerfd_create(CLOCK_MONOTONIC, 0), ep = epoll_create1(0);
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, 0), ify = inotify_init1(0), ffy = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
    timerfd_settime(tfd, 0, &its, NULL);
    epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev);
    inotify_add_watch(ify, argv[2], IN_CREATE);
    fanotify_mark(ffy, FAN_MARK_ADD, FAN_MODIFY, AT_FDCWD, argv[2]);
    if (efd < 0 || tfd < 0 || ep < 0 || sfd < 0 || ify < 0 || ffy < 0)
        return 1;
    FILE *f = fopen(argv[1], "w");
    fputs("ready", f);
    fclose(f);
    for (;;)
        pause();
}
"""


def test_crit_reads_dumped_event_fds(tmp_path):
    """A real dump of a task holding an eventfd, a timerfd, a signalfd, an epoll set, an inotify
    and a fanotify group: crit (CRIU 3.17's) decodes files.img and sees their entries."""
    from tests.unit.crhelpers import build_c, crpy, kill_quietly, start_target

    exe = build_c(tmp_path, "event_fds_holder", _EVENT_FDS_HOLDER)
    ready, watched, images = tmp_path / "ready", tmp_path / "watched", tmp_path / "img"
    watched.mkdir()
    proc = start_target([exe, ready, watched], ready.exists, "the event fds holder")
    res = crpy("dump", "-t", proc.pid, "-D", images)
    kill_quietly(proc.pid)
    proc.wait()
    assert res.returncode == 0, res.stderr
    by_type = {e["type"]: e for e in S.crit_decode(images / "files.img")["entries"]}
    assert by_type["EVENTFD"]["efd"]["counter"] == 7
    assert by_type["TIMERFD"]["tfd"]["clockid"] == 1 and by_type["TIMERFD"]["tfd"]["isec"] == 3600
    assert by_type["SIGNALFD"]["sgfd"]["sigmask"] == 1 << 9
    tfd, = by_type["EVENTPOLL"]["epfd"]["tfd"]
    assert tfd["data"] == 0x1234 and tfd["events"] == 0x19
    wd, = by_type["INOTIFY"]["ify"]["wd"]
    assert wd["wd"] == 1 and wd["i_ino"] == watched.stat().st_ino
    mark, = by_type["FANOTIFY"]["ffy"]["mark"]
    assert mark["ie"]["i_ino"] == watched.stat().st_ino
