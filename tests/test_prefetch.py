"""The shared read-ahead helpers keep order, re-raise producer errors and stop when closed."""

import threading
import time

import pytest

from samrs_hf.common.prefetch import prefetch, prefetch_map


def test_prefetch_keeps_order_and_reraises():
    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("bad.txt:2: garbled")

    stream = prefetch(broken(), depth=2)
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad.txt:2"):
        next(stream)


def test_closing_stops_the_producer():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), depth=2)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()
    n = len(produced)
    time.sleep(0.3)
    assert len(produced) == n <= 3 + 2 + 2  # bounded read-ahead, nothing after close
    assert not any(t.name == "samrs-prefetch" for t in threading.enumerate())


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_prefetch_map_is_an_ordered_map(workers):
    def slow_square(x):
        time.sleep(0.002 * (7 - x % 7))  # later items often finish first
        return x * x

    assert list(prefetch_map(slow_square, range(30), workers)) == [x * x for x in range(30)]


def test_prefetch_map_reraises_worker_errors():
    def fn(x):
        if x == 4:
            raise OSError("img_4.png: cannot decode")
        return x

    with pytest.raises(OSError, match="img_4.png"):
        list(prefetch_map(fn, range(10), 2))
