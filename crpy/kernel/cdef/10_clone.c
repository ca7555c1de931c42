/* clone3 and PR_SET_MM_MAP argument blocks (stable kernel ABI). */
struct crpy_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
             set_tid, set_tid_size, cgroup;
};
struct crpy_prctl_mm_map {
    uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack,
             arg_start, arg_end, env_start, env_end;
    uint64_t auxv;
    uint32_t auxv_size;
    uint32_t exe_fd;
};
