"""The restored child's side of a restore, in order (runs in the clone3 child, with the saved PID).

    session -> plan region -> premap memory -> (tree) fork the children -> fs (cwd, umask) -> fds
    -> (tree) fork the children sharing its fd table -> sigframe -> args -> task state
    -> (tree) barrier -> jump

The children are forked after the premap so that the pages a child shared with this task at
the dump (copy-on-write) are inherited again, not read in twice (crpy.dump.tree_cow).

Any failure here is written as one line "py MESSAGE" to the report pipe and ends the child with
exit 1; the parent turns it into a RestoreError and makes sure no process is left behind.
"""

import contextlib
import ctypes
import errno
import os
import time
import warnings

from crpy import faults
from crpy.errors import CrpyError
from crpy.kernel.libc import libc
from crpy.log import DEBUG, log
from crpy.restore import blob, exe, gadgets, layout, premap, sigframe, task_state

ARCH_GET_FS = 0x1003
RSEQ_SIG = 0x53053053
RSEQ_LEN = 32                  # glibc registers 32 bytes (its __rseq_size may say 20)
_IGNORE_ALL = [("ignore", None, Warning, None, 0)]    # warnings.filters after simplefilter("ignore")
_kept_streams = []             # old log streams: never closed, their fd numbers now belong to the task


def run_child(task, report_fd, keep_above, parent, hooks=None):
    """Become the task; never returns.  parent: the forking pid (this child dies with it).
    hooks (crpy.restore.fork.Hooks, for a tree): session(), premade_plan(), take_parent_pages(task),
    fork_children(plan), shares_files, fork_table_sharers(), files_sync() and before_jump()
    (the tree's barrier)."""
    try:
        _become_task(task, report_fd, keep_above, parent, hooks)
    except CrpyError as e:
        report_failure(report_fd, e.one_line())
    except BaseException as e:  # a bug: still one line to the parent, and no Python exit handlers
        log.debug("restored child failed", exc_info=True)
        _flush_log()
        report_failure(report_fd, f"internal error in the restored child: {type(e).__name__}: {e}")
    os._exit(1)


def report_failure(fd, message):
    try:
        os.write(fd, ("py " + message.replace("\n", " ") + "\n").encode())
    except OSError:
        pass


def prepare_process(parent):
    """First thing in every forked task: signals blocked, dies with its parent."""
    _block_all_signals()
    _die_with_parent(parent)


def _become_task(task, report_fd, keep_above, parent, hooks):
    t0 = time.perf_counter()
    if not (hooks and hooks.prepared):
        prepare_process(parent)
    faults.point("restore-after-fork", task.pid)
    if warnings.filters[:1] != _IGNORE_ALL:    # (a tree's task inherits its parent's)
        warnings.simplefilter("ignore")        # fd 2 is about to be the task's stderr
    _lift_log(keep_above)
    log.debug("child %d running (%.1f ms)", os.getpid(), (time.perf_counter() - t0) * 1e3)
    with _step("session"):
        restore_session(task) if hooks is None else hooks.session()
    with _step("restorer region"):
        plan = _reserve_region(task, hooks.premade_plan() if hooks else None)
        entry = blob.install_blob(plan.blob)
    if hooks:
        hooks.take_parent_pages(task)
    lazy_socket = hooks.lazy_socket if hooks else None
    if lazy_socket:
        from crpy.restore import lazy

        lazy.mark_lazy(task, hooks.node)
    t1 = time.perf_counter()
    nbytes = premap.premap_all(plan.slots, task.page_checks)
    premap.close_pages()
    t2 = time.perf_counter()
    log.info("premapped %d bytes in %.3f s (%.2f GiB/s)", nbytes, t2 - t1,
             nbytes / (1 << 30) / max(t2 - t1, 1e-9))
    faults.point("restore-after-premap", task.pid)
    if hooks:                  # after the premap: the children inherit this task's pages
        with _step("children"):
            hooks.fork_children(plan)
    faults.point("restore-after-children", task.pid)
    with _step("fs and fds"):
        restore_fs(task)
        if not (hooks and hooks.shares_files):       # else its parent has filled the table
            restore_fds(task, keep_above)
        exe_fd = exe.exe_fd(task, keep_above)
    faults.point("restore-after-fds", task.pid)
    if hooks:
        with _step("children sharing the fd table"):
            hooks.fork_table_sharers()
    with _step("sigframe and restorer arguments"):
        args = _build_args(task, plan, report_fd, keep_above, exe_fd,
                           hooks.files_sync() if hooks else (-1, -1, 0))
    with _step("task state"):
        task_state.apply(task.state)
        _chroot(task)
    log.info("child ready to jump into the restorer after %.3f s", time.perf_counter() - t0)
    if lazy_socket:
        with _step("lazy pages"):
            lazy.hand_over(task, plan.slots, lazy_socket, hooks.nr_tasks)
    faults.point("restore-before-ready", task.pid)
    if hooks:
        hooks.before_jump()
    _flush_log()
    blob.jump(entry, args)


def _step(name):
    """Times the step for the -v4 log; nothing otherwise (two clock reads a step, in every task)."""
    return _timed_step(name) if log.enabled(DEBUG) else contextlib.nullcontext()


@contextlib.contextmanager
def _timed_step(name):
    t, c = time.perf_counter(), time.process_time()
    yield
    log.debug("%s: %.1f ms (cpu %.1f ms)", name, (time.perf_counter() - t) * 1e3, (time.process_time() - c) * 1e3)


def _die_with_parent(parent):
    """SIGKILL this half-built task if crpy dies before it is done (the blob then sets the
    task's own parent-death signal)."""
    libc().prctl(1, 9, 0, 0, 0)                # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != parent:
        os._exit(1)


def _block_all_signals():
    """Every signal blocked (SIGKILL/SIGSTOP aside) from here to rt_sigreturn, which sets the
    task's mask: a handler must not run while the address space is half Python, half task."""
    mask = ctypes.c_uint64(~0 & (1 << 64) - 1)
    from crpy.kernel.syscalls import NR, sys_call

    sys_call(NR.rt_sigprocmask, 2, ctypes.addressof(mask), 0, 8, what="block all signals")


# ------------------------------------------------------------------------------ task state

def restore_session(task):
    """setsid for a task that led its session, setpgid for a group leader (task: anything
    with pid, pgid, sid)."""
    if task.sid == task.pid:
        os.setsid()
    elif task.pgid == task.pid:
        os.setpgid(0, 0)
    elif task.sid != os.getsid(0):
        log.warning("pid %d was in session %d; it is restored into crpy's session %d",
                    task.pid, task.sid, os.getsid(0))


def restore_fs(task):
    if task.umask is not None:
        os.umask(task.umask)
    if task.cwd:
        try:
            os.chdir(task.cwd)
        except OSError as e:
            from crpy.errors import RestoreError

            raise RestoreError(f"cwd {task.cwd} of pid {task.pid}: {os.strerror(e.errno)}") from None


def _chroot(task):
    """A task with its own root gets it last: crpy opens files by host paths until here (the
    cwd, set earlier, is the same directory either way)."""
    if task.root and task.root != "/":
        try:
            os.chroot(task.root)
        except OSError as e:
            from crpy.errors import RestoreError

            raise RestoreError(f"root {task.root} of pid {task.pid}: {os.strerror(e.errno)}") from None


def restore_fds(task, keep_above):
    from crpy.resources.fdtable import restore_fds as restore

    restore(task.images_dir, task.pid, keep_above)


def _lift_log(keep_above):
    """Point crpy's log at a copy of its fd above keep_above (the fds below are about to become
    the task's).  The old stream is kept, never closed."""
    _kept_streams.append(log.lift(keep_above))


def _flush_log():
    log.flush()


# ------------------------------------------------------------------------------ memory plan

_MAPS_LINE = None


def _self_maps():
    """[(start, end, name)] of this process (one regex over the whole file: a Python process
    has hundreds of mappings, and every task of a tree reads its own)."""
    import re

    global _MAPS_LINE
    if _MAPS_LINE is None:
        _MAPS_LINE = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+ *(.*)$", re.M)
    with open("/proc/self/maps", "rb") as f:
        data = f.read()
    return [(int(s, 16), int(e, 16), name.strip().decode(errors="surrogateescape"))
            for s, e, name in _MAPS_LINE.findall(data)]


_maps_here = [0, None]          # [pid, _self_maps()] of the process forking children


def plan_for_child(task):
    """The restorer region of a child this process is about to fork, planned here, from this
    process's own maps (read once for all its children), which the child inherits, and its
    signal frame (plan.frame): a child doing that work itself would read and parse the maps
    again, and copy the pages the work writes (a few hundred page faults in each task of a tree).  None when it cannot be planned (the
    child then plans it itself, and says why it cannot)."""
    pid = os.getpid()
    if _maps_here[0] != pid:
        _maps_here[:] = [pid, _self_maps()]
    try:
        plan = _plan(task, _maps_here[1])
    except CrpyError:
        return None
    try:                      # its signal frame too: the task's own registers, this vDSO
        plan.vdso_moves = _vdso_moves(plan)
        plan.frame = _frame_and_gadget(task, plan.vdso_moves[3])
    except CrpyError:
        pass                  # the child builds it, and says why it cannot
    return plan


def _reserve_region(task, plan):
    """The restorer region reserved: where its parent planned it (plan_for_child), unless the
    parent mapped something there after it read its maps; otherwise planned here."""
    from crpy.errors import KernelError

    if plan is not None:
        try:
            premap.reserve_region(plan)
            return plan
        except KernelError as e:
            if e.errno != errno.EEXIST:
                raise
            log.debug("pid %d: the region its parent planned is taken; planned again", task.pid)
    plan = _plan(task)
    premap.reserve_region(plan)
    return plan


_spans_here = [None, None, {}]  # [maps, layout.widened_spans of them, {VMAs: layout}]: the maps plan_for_child reads once


def _plan(task, maps=None):
    maps = _self_maps() if maps is None else maps
    if _spans_here[0] is not maps:
        _spans_here[:] = [maps, layout.widened_spans([(s, e) for s, e, _ in maps if e <= layout.TASK_SIZE]), {}]
    movable = [a for a in task.areas if a.kind not in ("vdso", "vvar")]
    specials = [(k, a.start, a.end) for a in task.areas for k in (a.kind,) if k in ("vdso", "vvar")]
    # siblings of a tree usually have the same VMAs: the same layout, found once
    key = (tuple((a.start, a.end, a.page_align, a.kind) for a in task.areas), tuple(task.guards),
           blob.nr_siginfo(task))
    found = _spans_here[2].get(key)
    if found is None:
        taken = [(a.start, a.end) for a in task.areas] + [(s, s + n) for s, n in task.guards]
        scratch = sum(a.length for a in task.areas if a.kind in ("vdso", "vvar"))
        try:
            plan = layout.plan_region(movable, blob.blob().size, blob.args_size(blob.nr_siginfo(task)), scratch,
                                      taken, _spans_here[1])
        except ValueError as e:
            from crpy.errors import RestoreError

            raise RestoreError(f"no room for the restorer region: {e}") from None
        found = _spans_here[2][key] = (plan.start, plan.length, plan.blob, plan.args, plan.scratch,
                                       [s.addr for s in plan.slots])
    start, length, blob_at, args_at, scratch_at, addrs = found
    plan = layout.RegionPlan(start, length, blob_at, args_at, scratch_at,
                             [layout.Slot(a, addr) for a, addr in zip(movable, addrs)])
    plan.maps = maps
    plan.specials = specials
    log.debug("restorer region %#x-%#x (%d slots)", plan.start, plan.start + plan.length, len(plan.slots))
    return plan


_rseq = []                     # [current_rseq()], found once: every task of a tree forks from crpy


def _current_rseq():
    """(area, len, sig) of this thread's glibc rseq registration, or None: the same in crpy and
    in every task it forks (one thread, one TLS, inherited), so looked up once."""
    if not _rseq:
        _rseq.append(_find_rseq())
    return _rseq[0]


def _find_rseq():
    try:
        size = ctypes.c_uint.in_dll(libc(), "__rseq_size").value
        offset = ctypes.c_long.in_dll(libc(), "__rseq_offset").value
    except ValueError:
        return None
    if not size:
        return None
    return (thread_pointer() + offset, RSEQ_LEN, RSEQ_SIG)


def thread_pointer():
    """This thread's fs base: where glibc's TLS block and thread descriptor are."""
    from crpy.kernel.syscalls import NR, sys_call

    fs = ctypes.c_ulong()
    sys_call(NR.arch_prctl, ARCH_GET_FS, ctypes.addressof(fs), what="arch_prctl(ARCH_GET_FS)")
    return fs.value


def _build_args(task, plan, report_fd, keep_above, exe_fd, files_sync, a=None):
    """The restorer's argument block, filled: at plan.args (made writable here), or `a`, a block
    elsewhere (crpy.restore.leaf builds a leaf's in its parent; the leaf copies it there)."""
    moves = getattr(plan, "vdso_moves", None)        # found by the parent (plan_for_child)
    pairs, hop, cur_block, vdso_pair = moves if moves is not None else _vdso_moves(plan)
    log.debug("vdso block %#x-%#x -> %#x%s", cur_block[0], cur_block[1], pairs[0][1],
              " (overlapping: through scratch)" if hop else "")
    unmap = layout.unmap_list([(plan.start, plan.start + plan.length), cur_block])
    premade = getattr(plan, "frame", None)           # built by the parent (plan_for_child)
    frame, gadget, kind = premade if premade is not None else _frame_and_gadget(task, vdso_pair)
    if a is None:
        a = blob.new_args(plan.args, blob.nr_siginfo(task))
    blob.fill_args(a, report_fd=report_fd, close_from=keep_above, region=(plan.start, plan.length),
                   cur_rseq=_current_rseq(), unmap=unmap, specials=pairs, hop=hop,
                   scratch=plan.scratch, moves=[(s.area.start, s.area.length, s.addr) for s in plan.slots],
                   guards=task.guards, task=task, exe_fd=exe_fd, frame=frame, gadget=gadget,
                   gadget_kind=kind, files_sync=files_sync)
    return a


def _vdso_moves(plan):
    """(vDSO/vvar moves [(current, target, length)], whether they need the scratch hop, the
    current block, the vDSO's own move); the same for every task with the same vDSO place."""
    key = (id(plan.maps), tuple(plan.specials))
    if _moves_here[0] != key:
        _moves_here[:] = [key, _find_vdso_moves(plan)]
    return _moves_here[1]


_moves_here = [None, None]      # [(maps, the task's vvar/vdso), _vdso_moves of them]


def _find_vdso_moves(plan):
    from crpy.errors import RestoreError

    cur_specials = [(n, s, e) for s, e, n in plan.maps if n in layout.SPECIAL_NAMES]
    try:
        pairs = layout.match_specials(cur_specials, plan.specials)
    except ValueError as e:
        raise RestoreError(f"cannot move the vDSO: {e}") from None
    cur_block = (pairs[0][0], pairs[-1][0] + pairs[-1][2])
    vdso_start = next(s for s, _, n in plan.maps if n == "[vdso]")
    return pairs, layout.needs_hop(pairs), cur_block, next(p for p in pairs if p[0] == vdso_start)


_gadget_here = [None, None]     # [(vDSO address, length), find_unmap_gadget of its bytes]


def _frame_and_gadget(task, vdso_pair):
    """The rt_sigframe, and the vDSO gadget that unmaps the region on the way out (if any)."""
    from crpy.cpuinfo import frame_xsave

    xsize, xcr0 = frame_xsave()            # (cached: CPUID traps to the hypervisor, ~30 us in a VM)
    pretcode = gadgets.task_restorer(task.sigactions) or gadgets.find_sigreturn(task.areas, read_range)
    gadget, kind = 0, 0
    if pretcode:
        vdso_cur, vdso_target, vdso_len = vdso_pair
        if _gadget_here[0] != (vdso_cur, vdso_len):   # (the vDSO crpy runs with: the same for all)
            _gadget_here[:] = [(vdso_cur, vdso_len), gadgets.find_unmap_gadget(ctypes.string_at(vdso_cur, vdso_len))]
        found = _gadget_here[1]
        if found:
            gadget, kind = vdso_target + found[0], found[1]
    if not gadget:
        log.warning("no way to unmap the restorer region from outside it: it stays in the task's maps")
    pending = [int.from_bytes(info[:4], "little") for _, info in task.state.pending]
    frame = sigframe.build_sigframe(task.regs, task.xsave, xsize, xcr0, task.sigmask, task.altstack,
                                    pretcode, sigframe.handler_at_return(pending, task.sigmask, task.sigactions),
                                    task.sigactions)
    log.debug("sigframe at %#x (%d bytes), fpstate at %#x, gadget %#x kind %d, pretcode %#x",
              frame.addr, len(frame.data), frame.fpstate, gadget, kind, pretcode)
    return frame, gadget, kind


def read_range(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)
