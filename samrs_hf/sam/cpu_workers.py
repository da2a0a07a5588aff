"""Single-threaded CPU workers for work made of many small torch ops (the mask decoder's prompt
groups): one worker per intra-op thread, each running its share of the items with one thread.

With torch's default intra-op parallelism every op ends in a barrier of all its OpenMP threads. On
a CPU shared with other jobs one of those threads is often descheduled, and an op then waits a
scheduler time slice for it: the decoder's ~100 ops per group of 2 prompts ran 4-12x slower under
a load average of ~4 on the 2-core dev VM (benchmarks/README.md, Round 3), where the image encoder's
few large ops lose ~2x. Workers that each own a core and share nothing lose only their share of
the CPU. Unloaded, they are ~1.3x slower than two threads per op on that VM.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import torch

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()
os.register_at_fork(after_in_child=_POOLS.clear)  # a forked child has none of the parent's threads


def _single_threaded() -> None:
    """A worker's start: torch initialises a thread's OpenMP / MKL thread count from the process
    default on its first query, so query first (or a later op would reset it), then set it to 1."""
    torch.get_num_threads()
    torch.set_num_threads(1)


def _pool(count: int) -> ThreadPoolExecutor:
    """``count`` threads whose torch ops each run on one thread. ``torch.set_num_threads`` in a worker
    also sets the process default for threads started later; it is put back once every worker has
    set its own."""
    with _LOCK:
        pool = _POOLS.get(count)
        if pool is None:
            started = threading.Barrier(count)
            pool = ThreadPoolExecutor(count, thread_name_prefix="samrs-cpu", initializer=_single_threaded)
            list(pool.map(lambda _: started.wait(), range(count)))  # every worker exists and is single-threaded
            torch.set_num_threads(count)
            _POOLS[count] = pool
    return pool


def workers() -> int:
    """How many workers :func:`map_in_workers` would use here: torch's intra-op threads (1: no pool)."""
    return 1 if torch.compiler.is_compiling() else torch.get_num_threads()


def map_in_workers(fn, items: list) -> list:
    """``[fn(x) for x in items]``, the items split into :func:`workers` contiguous shares run by
    single-threaded workers (in order; the caller's grad mode holds in the workers)."""
    count = min(workers(), len(items))
    if count <= 1:
        return [fn(x) for x in items]
    grad = torch.is_grad_enabled()

    def share(part):
        with torch.set_grad_enabled(grad):
            return [fn(x) for x in part]

    size = -(-len(items) // count)
    shares = [items[i : i + size] for i in range(0, len(items), size)]
    return [out for part in _pool(count).map(share, shares) for out in part]
