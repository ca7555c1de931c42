"""Step: mm-PID.img, the address space: mm fields (prctl PR_SET_MM_MAP), auxv, exe file and every
VMA, then the guard regions as CRIU-style VMA_AREA_GUARD entries at the end of the list."""

from crpy.dump import vmas as V
from crpy.images.vma_status import VMA_AREA_AIORING


def mm_entry(facts, plans, page_plan, misc, exe_file_id):
    from crpy.images.pb import mm_pb2

    st = facts.stat
    e = mm_pb2.mm_entry(
        mm_start_code=st.start_code, mm_end_code=st.end_code, mm_start_data=st.start_data,
        mm_end_data=st.end_data, mm_start_stack=st.start_stack, mm_start_brk=st.start_brk,
        mm_brk=misc.get("brk", st.start_brk), mm_arg_start=st.arg_start, mm_arg_end=st.arg_end,
        mm_env_start=st.env_start, mm_env_end=st.env_end, exe_file_id=exe_file_id,
        mm_saved_auxv=facts.auxv, dumpable=misc.get("dumpable", 1),
        thp_disabled=bool(misc.get("thp_disable", 0)))
    e.vmas.extend(_vma_entry(p) for p in plans)
    e.vmas.extend(V.guard_entry(s, end) for s, end in page_plan.guards)
    if any(p.status & VMA_AREA_AIORING for p in plans):
        from crpy.resources import aio

        aio.refuse_in_flight(facts.pid, plans)
        e.aios.extend(aio.ring_entries(plans))
    return e


def _vma_entry(plan):
    """vma_entry by every field it is made of: forked tasks have most of their VMAs alike (same
    bounds, same files), and copying a built entry costs a third of building it again.  Kept in
    the dump's memo (emptied when a dump begins)."""
    from crpy import resources

    key = (plan.start, plan.end, plan.pgoff, plan.shmid, plan.prot, plan.flags, plan.status, plan.madv,
           plan.fdflags, plan.pkey, plan.shmem_size)
    built = resources.dump_memo.setdefault("vma entries", {})
    entry = built.get(key)
    if entry is None:
        entry = built[key] = plan.entry()
    return entry


def exe_file_id(facts, files):
    """files.img id of the task's executable: a regular file, or the memfd it was fexecve'd from."""
    from crpy.dump.facts import memfd_file

    if memfd_file(facts.exe, facts.exe_st.st_dev):
        from crpy.resources import memfd

        return memfd.note_exe(facts.pid, facts.exe, facts.exe_st, files)
    return files.add_path(facts.exe, facts.exe_st)
