"""SEP pre-training from ``load_dataset(..., streaming=True)`` (``--streaming``): the whole of SAMRS trains
without a local Arrow copy.

An :class:`~datasets.IterableDataset` has no length, so each subset's size comes from its split sizes
(the card's ``dataset_info``, which ``samrs package`` writes; else the parquet footers of its data files),
and the per-subset batch sizes B_i are the map-style run's. Each subset is shuffled with a buffer (the
same seed on every process, reshuffled per epoch with ``set_epoch``) and cut per process by
``datasets.distributed.split_dataset_by_node``. The sampler reads the rows undecoded in the main process
and hands ``(subset, row, chunk, slot)`` keys to the DataLoader's workers, which decode and augment them
with the map-style run's seeds (:class:`.data.SEPTrainDataset`).
"""

from __future__ import annotations

import logging

import torch

from .data import SEPTrainDataset
from .training import loader_options

logger = logging.getLogger(__name__)
COLUMNS = ["image", "semantic"]


def split_size(spec: str, split: str) -> int:
    """Rows of ``split`` of a packaged folder or Hub repo without reading its rows: the dataset info's
    ``num_examples``, else the sum of the parquet footers' row counts. ValueError naming the dataset."""
    import datasets
    import fsspec
    import pyarrow.parquet as pq

    builder = datasets.load_dataset_builder(spec)
    splits = builder.info.splits
    if splits and split in splits and splits[split].num_examples:
        return int(splits[split].num_examples)
    files = (builder.config.data_files or {}).get(split)
    if not files:
        raise ValueError(f"dataset {spec} has no split {split!r} (has {sorted(builder.config.data_files or {})})")
    total = 0
    for path in files:
        with fsspec.open(path, "rb") as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def open_streams(subsets: dict, seed: int, buffer_size: int, rank: int, world_size: int) -> list:
    """Per subset (in order): undecoded image/semantic rows, shuffled with a buffer and cut for this process."""
    from datasets.distributed import split_dataset_by_node

    return [split_dataset_by_node(shuffled(ds.select_columns(COLUMNS).decode(False), seed, buffer_size),
                                  rank=rank, world_size=world_size) for ds in subsets.values()]


def shuffled(ds, seed: int, buffer_size: int):
    """``ds.shuffle`` feeding the buffer from up to 10 shards at a time (datasets' default), but no more
    than the dataset has: with fewer (measured with datasets 5.2) every pass waited 5 s."""
    return ds.shuffle(seed=seed, buffer_size=buffer_size, max_buffer_input_shards=max(1, min(10, ds.num_shards)))


class StreamingBatchSampler:
    """Micro-batches of ``(subset, row, chunk, slot)`` keys: B_i rows of every subset in subset order, as
    :class:`.data.ProportionalBatchSampler` makes them, drawn from the subsets' streams (endless: a stream
    that ends starts its next epoch). Starting at ``start_step`` replays the earlier micro-steps undecoded."""

    def __init__(self, streams: list, sizes: list[int], *, start_step: int = 0, num_steps: int | None = None,
                 num_replicas: int = 1, rank: int = 0):
        self.streams, self.sizes = streams, list(sizes)
        self.start, self.num_steps = start_step, num_steps
        self.num_replicas, self.rank = num_replicas, rank

    def _rows(self, subset: int):
        stream, epoch = self.streams[subset], 0
        while True:
            stream.set_epoch(epoch)
            empty = True
            for row in stream:
                empty = False
                yield row
            if empty:
                raise ValueError(f"subset #{subset}: this process's part of the stream is empty "
                                 f"(process {self.rank} of {self.num_replicas})")
            epoch += 1

    def __iter__(self):
        rows = [self._rows(i) for i in range(len(self.sizes))]
        step = 0
        while self.num_steps is None or step < self.start + self.num_steps:
            chunk = step * self.num_replicas + self.rank
            keys = []
            for i, b in enumerate(self.sizes):
                for _ in range(b):
                    keys.append((i, next(rows[i]), chunk, len(keys)))
            if step >= self.start:
                yield keys
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("endless sampler has no length")
        return self.num_steps


class StreamingSEPDataset(SEPTrainDataset):
    """Decodes and augments the rows the sampler hands over (runs in DataLoader workers)."""

    def __init__(self, crop_size: int, mean, std, seed: int = 0, photometric_on_device: bool = False):
        self.crop_size, self.mean, self.std, self.seed = crop_size, mean, std, seed
        self.photometric_on_device = photometric_on_device

    def row(self, subset: int, key) -> dict:
        from datasets import Image

        return {k: Image().decode_example(key[k]) for k in COLUMNS}


def streaming_loader(streams: list, sizes: list[int], dataset, args, accelerator, collate_fn, start_step: int = 0):
    """The streaming twin of :func:`.training.proportional_loader`: this process's micro-batches from
    optimizer step ``start_step`` to ``args.max_steps``."""
    g = args.gradient_accumulation_steps
    sampler = StreamingBatchSampler(streams, sizes, start_step=start_step * g, num_steps=(args.max_steps - start_step) * g,
                                    num_replicas=accelerator.num_processes, rank=accelerator.process_index)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn,
                                       **loader_options(args, accelerator))


def load_streaming(specs: dict[str, str], val_rows: int | None) -> tuple[dict, dict, list[int], dict]:
    """(``{subset: IterableDataset}`` of the train split, class names, train split sizes, validation sets).

    Validation needs lengths and indices, so the first ``val_rows`` (default :data:`VAL_ROWS`) rows of each
    validation stream are held in memory as a map-style ``Dataset`` (no cache file); a subset without a
    validation split trains without scores, as in the map-style run.
    """
    from itertools import islice

    from datasets import Dataset

    from .data import load_subsets

    train, names = load_subsets(specs, "train", streaming=True)
    lengths = [split_size(specs[s], "train") for s in train]
    for s, n in zip(train, lengths):
        if not n:
            raise ValueError(f"dataset {s}={specs[s]}: split 'train' is empty")
    val = {}
    for subset, spec in specs.items():
        try:
            stream = load_subsets({subset: spec}, "validation", streaming=True)[0][subset]
        except ValueError as exc:
            logger.warning("%s: no validation scores: %s", subset, exc)
            continue
        rows = list(islice(stream.decode(False), val_rows or VAL_ROWS))
        if rows:
            val[subset] = Dataset.from_list(rows, features=stream.features)
    return train, names, lengths, val


VAL_ROWS = 500
"""Validation rows per subset a streaming run holds in memory when ``--eval-max-samples`` is not given."""
