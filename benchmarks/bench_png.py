"""PNG encoding cost of patch images, which `samrs build`'s writer threads pay for every patch.

    PYTHONPATH=. python benchmarks/bench_png.py [IMAGE ...] [--levels 1 6] [--threads 1 2]

For each image (default: the real DOTA sample under ../shared/fixtures/real) it prints ms per
encode and bytes at each zlib level, then images/s of level ``samrs_hf.build.writer.IMAGE_PNG_LEVEL``
with 1..N threads (PIL releases the GIL while compressing, so writer threads scale).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT = Path(__file__).resolve().parents[2] / "shared/fixtures/real/dota/DOTA_devkit_example/images/P1888.png"


def per_encode(pixels: np.ndarray, level: int, reps: int) -> tuple[float, int]:
    from samrs_hf.build.layout import png_bytes

    t = time.perf_counter()
    for _ in range(reps):
        data = png_bytes(pixels, compress_level=level)
    return (time.perf_counter() - t) / reps, len(data)


def main(argv=None) -> int:
    from samrs_hf.build.writer import IMAGE_PNG_LEVEL
    from samrs_hf.build.layout import png_bytes

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*", type=Path, default=[DEFAULT])
    p.add_argument("--levels", type=int, nargs="+", default=[1, 3, 6])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    for path in args.images:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        print(f"{path.name} {pixels.shape[1]}x{pixels.shape[0]}")
        for level in args.levels:
            sec, size = per_encode(pixels, level, args.reps)
            print(f"  level {level}: {sec * 1000:7.1f} ms, {size:>9,} bytes")
        jobs = 4 * max(args.threads)
        for n in args.threads:
            t = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda _: png_bytes(pixels, compress_level=IMAGE_PNG_LEVEL), range(jobs)))
            print(f"  level {IMAGE_PNG_LEVEL}, {n} thread(s): {jobs / (time.perf_counter() - t):6.1f} images/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
