"""The dump, one module per step, in call order (crpy.dump.pipeline.run_dump drives them):

  target      refuse a missing pid, crpy itself, its ancestors
  seize       PTRACE_SEIZE + INTERRUPT; detach on the way out
  facts       /proc facts of the stopped task; refuses threads, children, seccomp, unsupported fds/VMAs
  vmas        VMAs as CRIU's vma_entry (status bits, flags, madv) and which pages each keeps
  pages       PAGEMAP_SCAN runs, page data through the parasite, pagemap/pages images
  infection   infect with the parasite (crpy.dump.parasite) and cure, as a context manager
  fds, fs     the fd table (crpy.resources) and cwd/root/umask
  task_state  sigactions and what only the task can tell (brk, altstack, ...)
  regs        registers, XSAVE, sigmask, rseq, robust list, pending signals
  mm, creds, core, images   the mm, creds and core entries, and writing every image
  tree        seize the whole tree until stable, pstree; kill it at the end (or leave it running)
  files, preload            helpers: the files.img table; protobuf imports on a side thread
"""
