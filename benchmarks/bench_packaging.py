"""Packaging and loading throughput on a generated build (issue 5 target: >= 200 images/s packaging on 2 cores).

    python3 benchmarks/bench_packaging.py [--images 2000] [--size 800] [--objects 12] [--workdir DIR]

A build of N 800x800 PNG images with gray/color maps and N_obj RLE instances each is generated
quickly (a few distinct images, their bytes re-used), packaged with ``samrs_hf.hub.packaging.package``
(statistics figures off: they are ``samrs stats``' cost, timed separately when --with-stats; the
integrity checks of every image, gray map and RLE are included), then
loaded with ``datasets.load_dataset`` and iterated with ``decode_masks``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bench_package_scale as scale
import numpy as np


def generate_build(out: Path, n: int, size: int, n_objects: int, distinct: int = 8) -> Path:
    """Objects of 10-80 px, all rows in the train split (what the figures below were taken with)."""
    return scale.generate_build(out, n, size, n_objects, distinct, box=(10, 80), split="train")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--objects", type=int, default=12)
    ap.add_argument("--load-images", type=int, default=500, help="examples iterated for load throughput")
    ap.add_argument("--with-stats", action="store_true", help="also time the statistics figures")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    import datasets

    from samrs_hf.hub.features import decode_masks
    from samrs_hf.hub.packaging import package

    work = Path(args.workdir or tempfile.mkdtemp(prefix="samrs-bench-"))
    try:
        t = time.perf_counter()
        build = generate_build(work / "build", args.images, args.size, args.objects)
        gen_s = time.perf_counter() - t
        mb = sum(p.stat().st_size for p in build.rglob("*") if p.is_file()) / 1e6
        print(f"generated {args.images} images {args.size}x{args.size}, {args.objects} objects each, "
              f"{mb:.0f} MB in {gen_s:.1f} s")

        t, c = time.perf_counter(), time.process_time()
        result = package([build], work / "hub", progress=False, stats=args.with_stats)
        pack_s, pack_cpu = time.perf_counter() - t, time.process_time() - c
        shards = sum(len(v) for v in result.files.values())
        print(f"package: {result.num_rows} images in {pack_s:.2f} s wall = {result.num_rows / pack_s:.0f} images/s; "
              f"{pack_cpu:.2f} s CPU = {result.num_rows / pack_cpu:.0f} images per CPU-second "
              f"({shards} shards{', with stats figures' if args.with_stats else ''}; every image, gray map and "
              f"RLE checked, dropped: {result.skips.what})")

        cache = work / "cache"
        t = time.perf_counter()
        ds = datasets.load_dataset(str(work / "hub"), split="train", cache_dir=str(cache))
        prep_s = time.perf_counter() - t
        print(f"load_dataset (parquet -> arrow cache): {len(ds)} rows in {prep_s:.2f} s")
        n = min(args.load_images, len(ds))
        t, c = time.perf_counter(), time.process_time()
        masks = 0
        for i in range(n):
            ex = ds[i]
            masks += decode_masks(ex).shape[0]
            np.asarray(ex["image"])
            np.asarray(ex["semantic"])
        it_s, it_cpu = time.perf_counter() - t, time.process_time() - c
        print(f"iterate with decoded image, semantic and masks: {n} examples in {it_s:.2f} s wall = "
              f"{n / it_s:.0f} examples/s; {n / it_cpu:.0f} examples per CPU-second ({masks} masks)")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
