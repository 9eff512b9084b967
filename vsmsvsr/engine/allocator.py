"""glibc allocator parameters for the CPU runners, set when the first CPU engine is built.

A window allocates and frees tensors of tens to hundreds of MB (features, x4 stages, columns)
hundreds of times. glibc serves every block above its mmap threshold (at most 32 MB, dynamic) with
a fresh ``mmap`` and returns it with ``munmap`` when freed, so every call page-faults its buffers
in again: 15-35 % of a PP-MSVSR window's wall time was kernel time on this machine. Keeping large
blocks in the heap (mmap threshold and trim threshold 2 GiB, 1 GiB top pad) lets them be reused:
0.35 -> 0.37-0.40 frames/s on 10 frames of 180x320 with the openvino backend, kernel time
4.4 s -> 0.7 s per window (measured). The cost: freed memory stays mapped by the process (its peak is what it holds, as it would
be during the next window anyway), so the peak RSS is not raised.

Never at import: :func:`keep_large_blocks` is called by the runners. ``VSMSVSR_MALLOC=system``
leaves glibc's defaults alone. Other C libraries (musl) are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger("vsmsvsr.engine")

ENV = "VSMSVSR_MALLOC"
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_SETTINGS = ((_M_MMAP_THRESHOLD, 2**31 - 1), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 1 << 30))
_done: list[bool] = []
_lock = threading.Lock()


def keep_large_blocks() -> bool:
    """Set the parameters once per process; returns whether they are set (glibc only)."""
    with _lock:
        if _done:
            return _done[0]
        ok = False
        if os.environ.get(ENV, "").strip().lower() != "system":
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                mallopt = getattr(libc, "mallopt", None)
                gnu = getattr(libc, "gnu_get_libc_version", None)
                if mallopt is not None and gnu is not None:
                    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                    ok = all(mallopt(param, value) == 1 for param, value in _SETTINGS)
            except OSError:
                ok = False
        log.debug("vsmsvsr.Engine: glibc large blocks kept in the heap: %s", ok)
        _done.append(ok)
        return ok


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if getattr(libc, "malloc_trim", None) is not None and \
        getattr(libc, "gnu_get_libc_version", None) is not None else None


_trim: list = []


def return_free_memory() -> bool:
    """Give the memory glibc holds free back to the system (``malloc_trim``); returns whether it ran.

    Called between windows, not calls: a window's buffers are freed by several threads into
    several malloc arenas, and glibc keeps what it cannot merge, so without this the RSS of a long
    clip grew by ~1 GB per 1000 frames of 640x360 -> 2560x1440 (measured; Python's own objects
    stayed flat), and with it stays flat. Inside a window the large blocks are still kept
    (:func:`keep_large_blocks`); one trim per window costs a window's first page faults only.
    """
    with _lock:
        if not _trim:
            _trim.append(_glibc())
        libc = _trim[0]
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
