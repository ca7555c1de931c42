"""zdtm harness, lazy restore: `crpy lazy-pages -D DIR` started before `crpy restore --lazy-pages`
(desc "lazy", or `run --lazy` for every test), and waited for once every page is in.

While the daemon serves a task, the task's lazy VMAs carry the userfaultfd flag "um" in smaps
VmFlags: the harness's VMA check ignores that one flag then.  The daemon must exit 0 before the
next dump of the task and after the test's verdict (its stderr and log go to DIR).
"""

import os
import subprocess
import time

from tests.zdtm.procs import HarnessError

LAZY_TIMEOUT = 120
UFFD_FLAG = "um"


def start_daemon(images_dir, push_delay_ms=0, page_server=None):
    """`crpy lazy-pages -D DIR` running, its socket ready; page_server: the port of a
    `crpy page-server --lazy-pages` on 127.0.0.1 to fetch the pages from."""
    from tests.zdtm.harness import REPO, crpy_command, crpy_env, tail

    sock = os.path.join(images_dir, "lazy-pages.socket")
    env = {"CRPY_LAZY_PUSH_DELAY_MS": str(push_delay_ms)} if push_delay_ms else None
    with open(os.path.join(images_dir, "lazy-pages.out"), "w") as out:
        remote = ["--page-server", "--address", "127.0.0.1", "--port", str(page_server)] if page_server else []
        proc = subprocess.Popen(crpy_command("lazy-pages", "-D", images_dir, "-v4", "-o", "lazy-pages.log",
                                             *remote),
                                cwd=REPO, env=crpy_env(env), stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise HarnessError(f"crpy lazy-pages did not start: {tail(os.path.join(images_dir, 'lazy-pages.out'))}")
        time.sleep(0.01)
    return proc


def wait_daemon(proc, images_dir, timeout=LAZY_TIMEOUT):
    """The daemon exits 0 (every page in) within timeout, or a HarnessError."""
    from tests.zdtm.harness import tail

    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise HarnessError(f"crpy lazy-pages still serving after {timeout} s\n"
                           f"{tail(os.path.join(images_dir, 'lazy-pages.log'))}") from None
    if code != 0:
        raise HarnessError(f"crpy lazy-pages exited with {code}: "
                           f"{tail(os.path.join(images_dir, 'lazy-pages.out'))}")


def stop_daemon(proc):
    """After a failure: no daemon left behind."""
    if proc and proc.poll() is None:
        proc.kill()
        proc.wait()
