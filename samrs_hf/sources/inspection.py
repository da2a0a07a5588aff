"""``samrs inspect``: what a source holds and what a build would make of it, before any SAM run.

One pass over the source gives image and object counts, image sizes, the patches the tiling would
produce (planned from sizes and boxes only) and every problem the reader recorded, grouped by
kind. Only headers are read, unless ``verify``: then every image is decoded in full (on all cores)
so that truncated or corrupt pixel data is a ``corrupt-image`` skip before any GPU time is spent.
The result is a plain JSON-ready dict; :func:`format_inspection` renders it as text.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .imageio import CorruptImageError, verify_image
from .readers import Source
from .records import CORRUPT_IMAGE, SourceImage
from .tiling import TilingConfig, plan_patches, unassigned_objects


def _stats(values: list[int]) -> dict | None:
    if not values:
        return None
    return {"min": min(values), "max": max(values), "mean": round(sum(values) / len(values), 2)}


def decoded(source: Source, images: Iterable[SourceImage], workers: int | None = None) -> Iterator[SourceImage]:
    """``images`` in order, less those whose pixels do not decode (each a ``corrupt-image`` skip in
    ``source.report``); ``workers`` threads (default: the core count) decode ahead of the caller."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers, thread_name_prefix="samrs-verify") as pool:
        pending: deque = deque()
        for image in images:
            pending.append((image, pool.submit(verify_image, image.image_path)))
            if len(pending) >= 2 * workers:
                yield from _decoded(source, *pending.popleft())
        while pending:
            yield from _decoded(source, *pending.popleft())


def _decoded(source: Source, image: SourceImage, future) -> Iterator[SourceImage]:
    try:
        future.result()
    except CorruptImageError as exc:
        source.report.skip(CORRUPT_IMAGE, source.rel(image.image_path), str(exc).split(": ", 1)[-1])
        source.skipped_images += 1
        return
    yield image


@dataclass
class _Tally:
    """What one pass over the source counted."""

    per_class: Counter = field(default_factory=Counter)
    per_split: Counter = field(default_factory=Counter)
    sizes: Counter = field(default_factory=Counter)
    images: int = 0
    with_objects: int = 0
    objects: int = 0
    difficult: int = 0
    truncated: int = 0
    unknown_size: int = 0
    patches: int = 0
    patch_objects: int = 0
    unassigned: int = 0

    def add(self, image, tiling: TilingConfig | None) -> None:
        self.images += 1
        self.per_split[image.split or ""] += 1
        self.with_objects += bool(image.objects)
        for obj in image.objects:
            self.per_class[obj.category] += 1
            self.difficult += obj.difficult
            self.truncated += obj.truncated
        self.objects += len(image.objects)
        if image.width is None or image.height is None:
            self.unknown_size += 1
            return
        self.sizes[(image.width, image.height)] += 1
        if tiling is not None:
            patches = plan_patches(image, tiling)
            self.patches += len(patches)
            self.patch_objects += sum(len(p.objects) for p in patches)
            self.unassigned += len(unassigned_objects(image, patches))


def inspect_source(source: Source, tiling: TilingConfig | None, *, progress: bool = False,
                   verify: bool = False) -> dict:
    """Read ``source`` once and summarise it; ``tiling`` None means patch counts are not planned;
    ``verify`` decodes every image (see the module docstring; needs ``source.check_images``)."""
    if verify and not source.check_images:
        raise ValueError("verify decodes the images: it needs a source opened with check_images=True")
    images = source.images()
    if verify:
        images = decoded(source, images)
    if progress:
        from tqdm import tqdm

        images = tqdm(images, total=len(source), desc=f"inspect {source.format}", unit="img", disable=None)
    tally = _Tally()
    for image in images:
        tally.add(image, tiling)
    return _summary(source, tiling, tally, verify)


def _summary(source: Source, tiling: TilingConfig | None, t: _Tally, verify: bool) -> dict:
    widths = [w for (w, _), n in t.sizes.items() for _ in range(n)]
    heights = [h for (_, h), n in t.sizes.items() for _ in range(n)]
    report = source.report
    table = source.class_table
    return {
        "format": source.format,
        "root": str(source.root),
        "class_table": {"subset": table.subset, "num_classes": len(table)},
        "check_images": source.check_images,
        "verified": verify,
        "images": {
            "found": len(source),
            "read": t.images,
            "with_objects": t.with_objects,
            "per_split": {k: t.per_split[k] for k in sorted(t.per_split)},
        },
        "sizes": {
            "width": _stats(widths),
            "height": _stats(heights),
            "most_common": [[w, h, n] for (w, h), n in sorted(t.sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:5]],
            "unknown": t.unknown_size,
        },
        "objects": {
            "total": t.objects,
            "difficult": t.difficult,
            "truncated": t.truncated,
            # Table order (= class id order), classes without objects left out.
            "per_class": {name: t.per_class[name] for name in table.names if t.per_class[name]},
        },
        "tiling": None if tiling is None else {
            "size": tiling.size,
            "gap": tiling.gap,
            "iof_thr": tiling.iof_thr,
            "patches": t.patches,
            "objects_in_patches": t.patch_objects,
            "objects_in_no_patch": t.unassigned,
            "images_without_size": t.unknown_size,
        },
        "problems": {
            "counts": report.counts(),
            "skipped": len(report.skips),
            "noted": len(report.problems) - len(report.skips),
            "by_kind": {kind: [{"where": p.where, "message": p.message, "skipped": p.skipped} for p in probs]
                        for kind, probs in report.by_kind().items()},
        },
    }


def format_inspection(result: dict, max_problems: int = 0) -> str:
    """Human-readable report; ``max_problems`` > 0 lists at most that many problems per kind."""
    out = []
    img, objs, sizes, tiling, probs = (result[k] for k in ("images", "objects", "sizes", "tiling", "problems"))
    table = result["class_table"]
    mode = ", pixels decoded" if result.get("verified") else "" if result["check_images"] else ", label-only"
    out.append(f"{result['format']} source {result['root']} (class table {table['subset']}, "
               f"{table['num_classes']} classes{mode})")
    splits = ", ".join(f"{k or '(root)'} {v}" for k, v in img["per_split"].items())
    out.append(f"images: {img['read']} read of {img['found']} found" + (f" ({splits})" if splits else "")
               + f"; {img['with_objects']} with objects")
    if sizes["width"]:
        w, h = sizes["width"], sizes["height"]
        common = ", ".join(f"{a}x{b} ({n})" for a, b, n in sizes["most_common"])
        out.append(f"sizes: width {w['min']}-{w['max']} (mean {w['mean']}), height {h['min']}-{h['max']} "
                   f"(mean {h['mean']}); most common: {common}")
    if sizes["unknown"]:
        out.append(f"sizes unknown (no readable image): {sizes['unknown']} images")
    out.append(f"objects: {objs['total']} (difficult {objs['difficult']}, truncated {objs['truncated']})")
    width = max([len(n) for n in objs["per_class"]] + [8])
    out += [f"  {name:<{width}} {n:>7}" for name, n in objs["per_class"].items()]
    if tiling is None:
        out.append("patches: not planned")
    else:
        how = ("uncut (one patch per image with objects)" if tiling["size"] is None else
               f"{tiling['size']} px windows, gap {tiling['gap']}, object kept when >= {tiling['iof_thr']:.0%} inside")
        out.append(f"tiling: {how}")
        line = (f"patches: {tiling['patches']} (objects in patches: {tiling['objects_in_patches']}, "
                f"objects in no patch: {tiling['objects_in_no_patch']})")
        if tiling["images_without_size"]:
            line += f"; {tiling['images_without_size']} images of unknown size not planned"
        out.append(line)
    if not probs["counts"]:
        out.append("problems: none")
    else:
        out.append(f"problems: {probs['skipped'] + probs['noted']} ({probs['skipped']} skipped, {probs['noted']} noted)")
        for kind, items in probs["by_kind"].items():
            out.append(f"  {kind} ({len(items)})")
            shown = items if max_problems <= 0 else items[:max_problems]
            out += [f"    {p['where']}: {p['message']}" + ("" if p["skipped"] else " [noted]") for p in shown]
            if len(shown) < len(items):
                out.append(f"    ... {len(items) - len(shown)} more (--max-problems 0 lists all)")
    return "\n".join(out)
