"""Packaging at full-SAMRS scale: does RSS stay flat over 20,000 images, and at what rate (issue 20, target 5)?

    PYTHONPATH=. python benchmarks/bench_package_scale.py [--images 20000] [--size 64] [--objects 8] [--workdir DIR]

A build folder of N small images is synthesized cheaply: a few distinct image / gray / color PNGs
whose bytes are re-used, and an ``ins/<name>.json`` per image written through the build's own record
writer (:class:`samrs_hf.build.records.PatchRecord` of :class:`InstanceRecord` with pycocotools RLE), so
packaging reads exactly what ``samrs build`` writes. The build is then packaged with
``samrs_hf.hub.packaging.package`` (every image, gray map and RLE checked; statistics figures off) while a
thread samples the process RSS (psutil, else /proc/self/status VmRSS) against the number of rows
packaging has produced so far. Printed: the CPU (model and bf16 flags), images/s, peak RSS, the peak
RSS of each tenth of the rows (RSS rises while a row group fills and drops when it is written) and its
growth per 1,000 images: the second half's peak minus the first half's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import numpy as np
from pycocotools import mask as mask_utils

from samrs_hf.build import layout
from samrs_hf.build.records import InstanceRecord, PatchRecord
from samrs_hf.sources.classes import get_class_table

MB = 1024 * 1024


def cpu_description() -> str:
    """``AMD EPYC, 2 cores, bf16: avx512_bf16`` from /proc/cpuinfo (what the dtype advice depends on)."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
    except OSError:
        pass
    bf16 = sorted(f for f in flags if "bf16" in f) or ["none (bf16 emulated)"]
    return f"{model}, {os.cpu_count()} cores, bf16 flags: {' '.join(bf16)}"


def rss_bytes() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def variants(size: int, n_objects: int, distinct: int, box: tuple[int, int] | None = None):
    """(class table, ``distinct`` (image, gray, color PNG bytes, instance records) of ``size``² with
    ``n_objects`` boxes each, sides in ``box`` (default 3 .. size/3)); smooth texture + mild noise, so the
    PNGs compress like aerial tiles, not like white noise. bench_packaging.py uses it too."""
    table = get_class_table("sota")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size]
    out = []
    for v in range(distinct):
        base = (np.sin(xx / (7 + v)) + np.cos(yy / (11 + v))) * 60 + 128
        image = np.clip(base[..., None] + rng.normal(0, 6, (size, size, 3)), 0, 255).astype(np.uint8)
        gray = np.full((size, size), 255, np.uint8)
        instances = []
        for _ in range(n_objects):
            w, h = (int(x) for x in rng.integers(*(box or (3, size // 3)), 2))
            x0, y0 = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            m = np.zeros((size, size), np.uint8)
            m[y0:y0 + h, x0:x0 + w] = 1
            cls = int(rng.integers(0, len(table)))
            gray[m.astype(bool)] = cls
            rle = mask_utils.encode(np.asfortranarray(m))
            instances.append(InstanceRecord(
                category=table.names[cls], label=cls, bbox=[x0, y0, x0 + w, y0 + h],
                rbox=[x0, y0, x0 + w, y0, x0 + w, y0 + h, x0, y0 + h],
                segmentation={"size": [size, size], "counts": rle["counts"].decode()},
                area=int(m.sum()), score=float(rng.uniform(0.5, 1.0))))
        out.append((layout.png_bytes(image), layout.png_bytes(gray), layout.png_bytes(gray, "L", table.flat_palette()),
                    instances))
    return table, out


def generate_build(out: Path, n: int, size: int, n_objects: int, distinct: int = 16,
                   box: tuple[int, int] | None = None, split: str | None = None) -> Path:
    """A build folder of ``n`` images (see the module docstring); ``ins/*.json`` through :class:`PatchRecord`."""
    table, images = variants(size, n_objects, distinct, box)
    for d in (layout.IMAGES, layout.GRAY, layout.COLOR, layout.INS):
        (out / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image, gray, color, instances = images[i % distinct]
        name = f"P{i // 4:06d}__{size}__{(i % 4) * size}___0"
        (out / layout.IMAGES / f"{name}.png").write_bytes(image)
        (out / layout.GRAY / f"{name}.png").write_bytes(gray)
        (out / layout.COLOR / f"{name}.png").write_bytes(color)
        record = PatchRecord(image=name, source_image=name.split("__")[0], offset=((i % 4) * size, 0), width=size,
                             height=size, split=split, instances=instances)
        (out / layout.INS / f"{name}.json").write_bytes(record.to_bytes())
    (out / layout.REPORT).write_bytes(layout.json_bytes({
        "subset": "sota", "classes": list(table.names), "model": {"spec": "synthetic", "random": True},
        "prompt": "H-Box", "source": "generated", "format": "dota"}))
    return out


class RssSampler:
    """(rows packaged so far, RSS) every ``interval`` seconds on a thread; ``tail`` holds the RSS samples
    after the last row (closing the shards, the card)."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.rows, self.samples, self.tail = interval, 0, [], []
        self.done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            (self.tail if self.done else self.samples).append((self.rows, rss_bytes()))
            self._stop.wait(self.interval)

    def count(self, rows):
        for row in rows:
            self.rows += 1
            yield row
        self.samples.append((self.rows, rss_bytes()))
        self.done = True

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.tail.append((self.rows, rss_bytes()))


def window_peaks(samples, n: int, windows: int = 10) -> list[tuple[int, int]]:
    """(last row, peak RSS) of each tenth of the rows: RSS saw-tooths with every row group written, so
    "flat" means these peaks do not rise."""
    out = []
    for w in range(windows):
        lo, hi = n * w // windows, n * (w + 1) // windows
        peak = max((m for r, m in samples if lo < r <= hi), default=None)
        if peak is not None:
            out.append((hi, peak))
    return out


def growth_per_1000(samples, n: int) -> float:
    """(peak RSS of the second half of the rows - that of the first half) per 1,000 images, MiB: RSS rises
    while a row group fills and drops when it is written, so flat means the later peaks are no higher."""
    first = max(m for r, m in samples if r <= n // 2)
    second = max(m for r, m in samples if r > n // 2)
    return (second - first) / MB / max(1, n - n // 2) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--size", type=int, default=64, help="image side (small: the cost per image, not per pixel)")
    ap.add_argument("--objects", type=int, default=8, help="instances per image")
    ap.add_argument("--workdir", default=None, help="keep the build and package here (default: a temp folder)")
    args = ap.parse_args(argv)

    from samrs_hf.hub import packaging

    print(f"CPU: {cpu_description()}")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="samrs-scale-"))
    try:
        t = time.perf_counter()
        build = generate_build(work / "build", args.images, args.size, args.objects)
        print(f"generated a build of {args.images} images {args.size}x{args.size}, {args.objects} instances each, "
              f"in {time.perf_counter() - t:.1f} s")
        base = rss_bytes()
        with RssSampler() as sampler:
            rows_from_builds = packaging.rows_from_builds
            counted = lambda *a, **k: sampler.count(rows_from_builds(*a, **k))  # noqa: E731
            with mock.patch.object(packaging, "rows_from_builds", counted):
                t, c = time.perf_counter(), time.process_time()
                result = packaging.package([build], work / "hub", progress=False, stats=None)
                wall, cpu = time.perf_counter() - t, time.process_time() - c
        n = result.num_rows
        peak = max(m for _, m in sampler.samples + sampler.tail)
        stream_peak = max(m for _, m in sampler.samples)
        peaks = window_peaks(sampler.samples, n)
        print(f"package: {n} images in {wall:.1f} s = {n / wall:.0f} images/s wall, {n / cpu:.0f} per CPU-second "
              f"({sum(len(v) for v in result.files.values())} shards; dropped: {result.skips.what})")
        print(f"RSS: {base / MB:.0f} MiB before, peak {peak / MB:.0f} MiB (+{(peak - base) / MB:.0f} MiB; while rows "
              f"streamed {stream_peak / MB:.0f} MiB); growth (peak of the second half of the rows - peak of the first): "
              f"{growth_per_1000(sampler.samples, n):+.2f} MiB per 1,000 images")
        print("  peak RSS per tenth of the rows: " + ", ".join(f"{r}: {m / MB:.0f}" for r, m in peaks) + " MiB")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
