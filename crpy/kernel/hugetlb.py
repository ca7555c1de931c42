"""hugetlb facts shared by dump and restore: MAP_HUGETLB and how mmap flags carry the huge page
size (log2 of it in bits 26..31, MAP_HUGE_SHIFT; 0 means the default size), and how /proc shows
anonymous hugetlb memory (a deleted "/anon_hugepage" file on the kernel's internal hugetlbfs)."""

MAP_HUGETLB = 0x40000
MAP_HUGE_SHIFT = 26
MAP_HUGE_MASK = 0x3F << MAP_HUGE_SHIFT
ANON_PATH = "/anon_hugepage"


def size_flag(page_size):
    """The MAP_HUGE_* bits for a huge page of page_size bytes (a power of two)."""
    if page_size <= 0 or page_size & (page_size - 1):
        raise ValueError(f"not a huge page size: {page_size}")
    return (page_size.bit_length() - 1) << MAP_HUGE_SHIFT


def page_size(flags):
    """The huge page size that mmap flags ask for, in bytes; 0 when not MAP_HUGETLB or the default."""
    shift = (flags & MAP_HUGE_MASK) >> MAP_HUGE_SHIFT
    return 1 << shift if flags & MAP_HUGETLB and shift else 0


def is_hugetlb(vma):
    """A hugetlb VMA (smaps VmFlags "ht")."""
    return "ht" in vma.vmflags


def is_anon(vma):
    """MAP_HUGETLB|MAP_ANONYMOUS memory (private or shared), not a file of a hugetlbfs mount."""
    return is_hugetlb(vma) and vma.deleted and vma.path == ANON_PATH
