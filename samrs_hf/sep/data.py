"""SEP data path: packaged SAMRS subsets -> augmented tensors, and proportional batch sampling.

Sampling is a pure function of (seed, micro-step, process): subset i's examples form an endless
stream of per-epoch permutations, and micro-batch c takes the next B_i of them. Resuming at any
step therefore replays exactly the order an uninterrupted run would see, with no sampler state
to save; augmentation randomness is seeded from the same coordinates, so worker count and
scheduling never change what a step trains on.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sources.classes import get_class_table
from .augmentation import augment, center_crop, crop_or_pad, geometric, scaled_crop  # noqa: F401 - their old home
from .photometric_device import pack_plan

# -- proportional sampling ------------------------------------------------------------------------
BATCH_ROUNDINGS = ("floor", "largest-remainder")


def proportional_sizes(lengths, batch_size: int, rounding: str = "largest-remainder",
                       names=None) -> list[int]:
    """B_i = L_i / sum(L) * B per subset.

    ``floor``: ``int(B * L_i / sum(L))`` as the authors' code does (B = 12 with SOTA / SIOR / FAST's
    17,480 / 11,725 / 64,147 gives 2 / 1 / 8: 11 images, not 12); a subset that gets 0 is an error naming it.
    ``largest-remainder``: sizes that sum to B, each >= 1; ties in the remainder go to the earlier subset,
    and when forcing a subset up to 1 overshoots B, the subsets furthest above their exact share give back.
    """
    lengths = [int(n) for n in lengths]
    if not lengths or any(n <= 0 for n in lengths):
        raise ValueError(f"every subset needs at least one example, got sizes {lengths}")
    if batch_size < len(lengths):
        raise ValueError(f"batch size {batch_size} is smaller than the number of subsets ({len(lengths)})")
    if rounding not in BATCH_ROUNDINGS:
        raise ValueError(f"--batch-rounding must be one of {BATCH_ROUNDINGS}, got {rounding!r}")
    total = sum(lengths)
    if rounding == "floor":
        sizes = [batch_size * n // total for n in lengths]
        empty = [str(names[i] if names else f"#{i}") for i, b in enumerate(sizes) if b == 0]
        if empty:
            raise ValueError(f"--batch-rounding floor gives subset(s) {', '.join(empty)} no image of a micro-batch "
                             f"of {batch_size} (sizes {lengths}): raise --batch-size or use largest-remainder")
        return sizes
    quota = [n * batch_size / total for n in lengths]
    sizes = [max(1, int(q)) for q in quota]
    order = sorted(range(len(lengths)), key=lambda i: (-(quota[i] - int(quota[i])), i))
    k = 0
    while sum(sizes) < batch_size:
        sizes[order[k % len(order)]] += 1
        k += 1
    while sum(sizes) > batch_size:
        i = max((j for j in range(len(sizes)) if sizes[j] > 1), key=lambda j: (sizes[j] - quota[j], -j))
        sizes[i] -= 1
    return sizes


class ProportionalBatchSampler:
    """Micro-batches of ``(subset, index, chunk, slot)`` keys, grouped by subset in a fixed order.

    ``chunk`` = micro_step * num_replicas + rank names the slice of each subset's stream this
    process trains on; ``slot`` is the position in the micro-batch (both seed augmentation).
    """

    def __init__(self, lengths, micro_batch_size: int, *, seed: int = 0, start_step: int = 0,
                 num_steps: int | None = None, num_replicas: int = 1, rank: int = 0,
                 rounding: str = "largest-remainder", names=None):
        self.lengths = [int(n) for n in lengths]
        self.sizes = proportional_sizes(self.lengths, micro_batch_size, rounding, names)
        self.seed, self.start, self.num_steps = seed, start_step, num_steps
        self.num_replicas, self.rank = num_replicas, rank
        self._perm: dict[int, tuple[int, np.ndarray]] = {}

    def _stream(self, subset: int, positions: range) -> list[int]:
        n = self.lengths[subset]
        out = []
        for k in positions:
            epoch = k // n
            cached = self._perm.get(subset)
            if cached is None or cached[0] != epoch:
                perm = np.random.default_rng([self.seed, subset, epoch]).permutation(n)
                self._perm[subset] = cached = (epoch, perm)
            out.append(int(cached[1][k % n]))
        return out

    def batch(self, micro_step: int) -> list[tuple[int, int, int, int]]:
        chunk = micro_step * self.num_replicas + self.rank
        keys = []
        for i, b in enumerate(self.sizes):
            for idx in self._stream(i, range(chunk * b, (chunk + 1) * b)):
                keys.append((i, idx, chunk, len(keys)))
        return keys

    def __iter__(self):
        step = self.start
        while self.num_steps is None or step < self.start + self.num_steps:
            yield self.batch(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("endless sampler has no length")
        return self.num_steps


def to_tensor(x: np.ndarray, mean, std) -> torch.Tensor:
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class SEPTrainDataset(torch.utils.data.Dataset):
    """Decodes and augments one example per sampler key (runs in DataLoader workers).

    ``caches`` (one :class:`.decode_cache.DecodeCache` per subset) replaces decoding the PNGs by reading the
    crop's region of the decoded arrays. ``photometric_on_device`` stops after the uint8 geometric part and
    hands over ``(subset, uint8 crop, uint8 labels, photometric row)`` for
    :func:`.photometric_device.device_batches`; the random draws are the same either way.
    """

    caches = None
    photometric_on_device = False

    def __init__(self, subsets: list, crop_size: int, mean, std, seed: int = 0, caches: list | None = None,
                 photometric_on_device: bool = False):
        self.subsets = [ds.select_columns(["image", "semantic"]) for ds in subsets]
        self.crop_size, self.mean, self.std, self.seed = crop_size, mean, std, seed
        self.caches, self.photometric_on_device = caches, photometric_on_device

    def row(self, subset: int, index) -> dict:
        """The decoded image and semantic map a key names (the streaming twin gets the row itself)."""
        return self.subsets[subset][index]

    def __getitem__(self, key):
        subset, index, chunk, slot = key
        if self.caches is not None:
            image, semantic = self.caches[subset].arrays(index)
        else:
            row = self.row(subset, index)
            image, semantic = row["image"], row["semantic"]
        rng = np.random.default_rng([self.seed, chunk, slot, 7919])
        if self.photometric_on_device:
            plan, img, lab = geometric(image, semantic, self.crop_size, rng)
            return subset, torch.from_numpy(img), torch.from_numpy(lab), torch.from_numpy(pack_plan(plan))
        img, lab = augment(image, semantic, self.crop_size, rng)
        return subset, to_tensor(img, self.mean, self.std), torch.from_numpy(lab)


def collate(items) -> dict:
    """Stack a micro-batch; ``subset_sizes`` counts its examples per subset (keys arrive grouped). Items of
    ``photometric_on_device`` give ``images`` (uint8, N x H x W x 3), uint8 ``labels`` and ``photometric``."""
    subsets = [item[0] for item in items]
    sizes = [subsets.count(i) for i in sorted(set(subsets))]
    columns = list(zip(*items))[1:]
    names = ("images", "labels", "photometric") if len(columns) == 3 else ("pixel_values", "labels")
    return {**{name: torch.stack(column) for name, column in zip(names, columns)}, "subset_sizes": sizes}


class CenterCropDataset(torch.utils.data.Dataset):
    """Evaluation view of a packaged subset: centre crops, normalised."""

    def __init__(self, ds, crop_size: int, mean, std):
        self.ds = ds.select_columns(["image", "semantic"])
        self.crop_size, self.mean, self.std = crop_size, mean, std

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        row = self.ds[i]
        img, lab = center_crop(row["image"], row["semantic"], self.crop_size)
        return to_tensor(img, self.mean, self.std), torch.from_numpy(lab)


# -- dataset loading and checks -----------------------------------------------------------------
def parse_dataset_args(values) -> dict[str, str]:
    """``["sota=PATH", ...]`` -> ``{"sota": "PATH"}`` (order kept, duplicates rejected)."""
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, spec = v.partition("=")
        if not sep or not name or not spec:
            raise ValueError(f"--dataset {v!r}: expected SUBSET=PATH_OR_REPO, e.g. sota=./SAMRS-SOTA")
        if name in out:
            raise ValueError(f"--dataset {name} given twice")
        out[name] = spec
    if not out:
        raise ValueError("give at least one --dataset SUBSET=PATH_OR_REPO")
    return out


def class_names_of(ds, subset: str, spec: str) -> list[str]:
    """Class names of a packaged subset; raises when its features are not SAMRS features."""
    from datasets import ClassLabel, Image

    from ..hub.features import category_feature, samrs_features

    f = ds.features
    problems = [k for k in ("image", "semantic") if not isinstance(f.get(k), Image)]
    category = None
    try:
        category = category_feature(f)
    except (KeyError, AttributeError, TypeError):
        pass
    if not isinstance(category, ClassLabel):
        problems.append("objects.category (ClassLabel)")
    if problems:
        raise ValueError(f"dataset {subset}={spec}: features do not match packaged SAMRS features: "
                         f"missing or wrong {', '.join(problems)}; got {sorted(f)}")
    try:
        table = get_class_table(subset)
    except (KeyError, ValueError):
        table = None
    if table is not None and f != samrs_features(table):
        raise ValueError(f"dataset {subset}={spec}: features differ from samrs_features({subset!r}) "
                         f"(class names {category.names[:5]}... vs {list(table.names)[:5]}...); "
                         f"is it another subset's data?")
    return list(category.names)


def load_subsets(specs: dict[str, str], split: str, streaming: bool = False) -> tuple[dict, dict[str, list[str]]]:
    """``{subset: Dataset}`` (``IterableDataset`` when ``streaming``) for ``split`` and ``{subset: class
    names}``, checked before use."""
    from ..hub.repo import load

    data, names = {}, {}
    for subset, spec in specs.items():
        try:
            dsd = load(spec, streaming=True) if streaming else load(spec)
        except Exception as exc:  # datasets raises many types for a bad path / offline repo
            raise ValueError(f"dataset {subset}={spec}: cannot load it ({type(exc).__name__}: {exc})") from None
        if split not in dsd:
            raise ValueError(f"dataset {subset}={spec} has no split {split!r} (has {sorted(dsd)})")
        data[subset] = dsd[split]
        if not streaming and len(data[subset]) == 0:
            raise ValueError(f"dataset {subset}={spec}: split {split!r} is empty")
        names[subset] = class_names_of(data[subset], subset, spec)
    return data, names
