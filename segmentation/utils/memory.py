"""Host-memory behaviour of CPU runs."""
import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger("segmentation")

# mallopt parameters of glibc's <malloc.h>
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system (CPU_KEEP_FREED_MEMORY).

    By default glibc unmaps or trims large freed blocks, so every batch's fresh tensors are page-faulted in again by
    the kernel: about half of the OM target time and ~10 % of a CPU training step here (docs/benchmarks.md). This
    is what a caching allocator (CUDA's, jemalloc, tcmalloc) avoids. The process keeps its peak memory instead of
    giving it back between iterations. Returns True if applied (Linux with glibc), False otherwise.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 and mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1) == 1
    if ok:
        logger.debug("glibc malloc keeps freed memory (CPU_KEEP_FREED_MEMORY).")
    return ok
