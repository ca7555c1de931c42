"""One ctypes handle on the C library for all of crpy, made once.

ctypes.CDLL(None) builds a new class for its function pointers every time it is called (about
0.1 ms), and every function looked up on it is a new object too; in the tasks of a restored tree,
which all inherit crpy's memory by fork, that work also copies the pages it touches.  crpy makes
the handle (and looks up the functions every task calls) before it forks the tree."""

_handle = None


def libc():
    """ctypes.CDLL(None, use_errno=True), the same object on every call."""
    global _handle
    if _handle is None:
        import ctypes

        _handle = ctypes.CDLL(None, use_errno=True)
    return _handle
