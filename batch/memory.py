"""Hand freed memory back to the operating system between pipeline steps.

Two allocators hold a run's freed memory: Arrow's (mimalloc here: pandas' ``str`` columns live in it)
and glibc's malloc (numpy, Python objects). Both keep freed pages for reuse, and neither kind of
page can serve the other allocator, so after the event frames are freed their ~250 MB stayed resident
through the model steps (measured with bench/batch_pipeline.py). ``release_freed`` returns them:
Arrow's ``release_unused`` and glibc's ``malloc_trim(0)`` (skipped where there is no glibc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyarrow as pa


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


def use_system_allocator() -> None:
    """Make Arrow allocate with glibc's malloc (the system pool) from now on, in this process.

    Arrow's default pool (mimalloc) kept ~70-100 MB of a Parquet read resident after the read's buffers were
    freed, even after ``release_unused``; with the system pool ``malloc_trim`` returns them. For the batch
    process only (``run_batch`` calls it): the peak RSS of a run fell by that much (bench/batch_pipeline.py).
    """
    if pa.default_memory_pool().backend_name != "system":
        pa.set_memory_pool(pa.system_memory_pool())


def release_freed() -> None:
    """Return memory freed so far to the OS (a no-op where the allocators do not support it)."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
