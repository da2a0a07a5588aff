"""Run an iterator in a background thread, a bounded number of items ahead, keeping order.

Reading files, decoding images, tiling and making prompts (the producer) then overlap with the
consumer's work (SAM compute, parquet writing), which releases the GIL for most of its time.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator

_DONE = object()


def prefetch(iterable: Iterable, depth: int = 16) -> Iterator:
    """Yield the items of ``iterable`` in order while one thread produces up to ``depth`` ahead.

    A single producer keeps order and side effects (skip reports, ids) exactly as without it; its
    exceptions are re-raised in the consumer. Closing the generator stops the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value) -> bool:
        while not stop.is_set():
            try:
                q.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for value in iterable:
                if not put((True, value)):
                    return
            put((True, _DONE))
        except BaseException as exc:  # handed to the consumer
            put((False, exc))

    thread = threading.Thread(target=produce, name="samrs-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = q.get()
            if not ok:
                raise value
            if value is _DONE:
                return
            yield value
    finally:
        stop.set()
        thread.join()


def prefetch_map(fn, items: Iterable, workers: int) -> Iterator:
    """``map(fn, items)`` on ``workers`` threads, results in order, a bounded number ahead.

    ``workers=0`` runs inline. Closing the generator stops reading ``items`` and cancels the work
    not yet started.
    """
    if workers <= 0:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="samrs-read")
    futures = prefetch((pool.submit(fn, it) for it in items), depth=workers + 1)
    try:
        for future in futures:
            yield future.result()
    finally:
        futures.close()
        pool.shutdown(wait=True, cancel_futures=True)
