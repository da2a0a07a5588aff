"""``--decode-cache DIR``: each training image and semantic map decoded from its PNG once, into uint8 arrays
on disk that the DataLoader workers then memory-map, reading only the region a crop needs.

One folder per subset, ``DIR/<subset>-<key>/``, where the key hashes what the dataset's rows are
(:func:`dataset_identity`: its Arrow cache files, which change with its data files), its row count, its
columns and :data:`CACHE_VERSION`: a changed dataset gets a new
folder and its old cache is never read. The folder holds :data:`FILES`: ``images.u8`` (RGB pixels of every
row, row after row), ``semantic.u8`` (the labels), ``index.npy`` ((rows, 3) int64: first pixel, height,
width) and ``meta.json``, written last, which makes the cache complete. Each file is written under a
temporary name and renamed (a killed build leaves no complete-looking cache); a cache whose files do not
match its ``meta.json`` is built again. samrs deletes only these names (and its own temporary files) in
such a folder, never anything else in ``DIR``. Costs 4 bytes per pixel of disk (SAMRS' 93,352 training
images at 1024², 800² and 600²: about 196 GB).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ..common.errors import SamrsError
from ..common.files import atomic_write
from ..common.prefetch import prefetch_map
from ..common.safe_load import load_arrays

logger = logging.getLogger(__name__)
CACHE_VERSION = 2
FILES = ("images.u8", "semantic.u8", "index.npy", "meta.json")
META = "meta.json"


class DecodeCacheError(SamrsError, ValueError):
    """A row that cannot go into the decode cache (undecodable, or labels that are not one uint8 map of the
    image's size); the message names the dataset and the row."""


def dataset_identity(ds) -> list:
    """What ``ds``'s rows are, by public ``datasets`` APIs: its Arrow cache files (``load_dataset`` names
    them by a hash of the data files and their modification times) with their sizes and times, or, for an
    in-memory dataset, a hash of its table."""
    if not ds.cache_files:
        from datasets.fingerprint import Hasher

        return [Hasher.hash(ds.data)]
    identity = []
    for entry in ds.cache_files:
        stat = Path(entry["filename"]).stat()
        identity.append([entry["filename"], stat.st_size, stat.st_mtime_ns])
    return identity


def cache_key(ds) -> str:
    """What the cache of ``ds`` is valid for: its data (:func:`dataset_identity`), row count and columns,
    and the cache layout version."""
    text = json.dumps({"data": dataset_identity(ds), "rows": len(ds), "columns": ds.column_names,
                       "version": CACHE_VERSION})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class DecodeCache:
    """One subset's decoded rows: :meth:`arrays` gives row ``i``'s (H, W, 3) image and (H, W) labels as
    read-only views of the memory-mapped files (only the pages a slice touches are read). Pickles without
    its maps (DataLoader workers open their own)."""

    def __init__(self, folder: Path, index: np.ndarray, decoded: int = 0):
        self.folder, self.index, self.decoded = Path(folder), index, decoded
        self._maps = None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):
        return {**self.__dict__, "_maps": None}

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            self._maps = tuple(np.memmap(self.folder / name, dtype=np.uint8, mode="r") for name in FILES[:2])
        start, h, w = (int(v) for v in self.index[i])
        images, labels = self._maps
        return (images[3 * start:3 * (start + h * w)].reshape(h, w, 3),
                labels[start:start + h * w].reshape(h, w))


def open_decode_cache(root, subset: str, ds, workers: int = 0, progress: bool = False) -> DecodeCache:
    """The cache of ``ds`` (a map-style split with ``image`` and ``semantic``) under ``root``, built first when
    missing or incomplete; ``.decoded`` tells how many rows this call decoded (0: reused)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise DecodeCacheError(f"--decode-cache {root}: not a folder")
    key = cache_key(ds)
    folder = root / f"{subset}-{key}"
    cache = _read(folder, key, len(ds))
    if cache is not None:
        return cache
    others = sorted(p.name for p in root.glob(f"{subset}-*") if p != folder and (p / META).is_file())
    if others:
        logger.info("%s: decode caches of earlier versions of this dataset, no longer read: %s (in %s)",
                    subset, ", ".join(others), root)
    return _build(folder, key, subset, ds, workers, progress)


def _read(folder: Path, key: str, rows: int) -> DecodeCache | None:
    """The complete cache in ``folder``, or None (absent, or not matching its meta.json: built again)."""
    try:
        meta = json.loads((folder / META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable (%s); decoding again", folder / META, exc)
        return None
    try:
        index = load_arrays(folder / "index.npy")
        pixels = int(index[:, 1].astype(np.int64) @ index[:, 2]) if len(index) else 0
        sizes = [(folder / name).stat().st_size for name in FILES[:2]]
        ok = (meta.get("key") == key and meta.get("version") == CACHE_VERSION and meta.get("rows") == rows
              and index.shape == (rows, 3) and sizes == [3 * pixels, pixels])
    except (OSError, ValueError, IndexError):
        ok = False
    if not ok:
        logger.warning("%s: decode cache does not match its dataset or is incomplete; decoding again", folder)
        return None
    return DecodeCache(folder, index)


def _decode(subset: str, i: int, row: dict) -> tuple[np.ndarray, np.ndarray]:
    """Row ``i``'s pixels as the PNG path reads them: ``convert("RGB")`` and the semantic map as it is."""
    from datasets import Image

    try:
        image = np.asarray(Image().decode_example(row["image"]).convert("RGB"))
        labels = np.asarray(Image().decode_example(row["semantic"]))
    except Exception as exc:  # PIL raises several types for a corrupt file
        raise DecodeCacheError(f"dataset {subset}: train row {i}: cannot decode ({type(exc).__name__}: {exc})") from None
    if labels.dtype != np.uint8 or labels.shape != image.shape[:2]:
        raise DecodeCacheError(f"dataset {subset}: train row {i}: semantic map {labels.dtype} {labels.shape} is not "
                               f"one uint8 map of the image's size {image.shape[:2]}")
    return image, labels


def _build(folder: Path, key: str, subset: str, ds, workers: int, progress: bool) -> DecodeCache:
    """Decode every row (``workers`` threads; PIL's decoders release the GIL) into temporary files, rename
    them, then write ``index.npy`` and ``meta.json`` last."""
    from datasets import Image
    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    _remove_own(folder)
    raw = ds.select_columns(["image", "semantic"]).cast_column("image", Image(decode=False))
    raw = raw.cast_column("semantic", Image(decode=False))
    temps = [tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder) for name in FILES[:2]]
    index, start = np.zeros((len(ds), 3), dtype=np.int64), 0
    try:
        with os.fdopen(temps[0][0], "wb") as f_img, os.fdopen(temps[1][0], "wb") as f_lab:
            decoded = prefetch_map(lambda item: _decode(subset, *item), enumerate(raw), workers)
            for i, (image, labels) in enumerate(tqdm(decoded, total=len(ds), desc=f"decode cache {subset}",
                                                     disable=not progress)):
                f_img.write(image.tobytes())
                f_lab.write(labels.tobytes())
                index[i] = start, *labels.shape
                start += labels.size
        for (_, tmp), name in zip(temps, FILES[:2]):
            os.replace(tmp, folder / name)
    except BaseException:
        for _, tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    buffer = _npy_bytes(index)
    atomic_write(folder / "index.npy", buffer)
    meta = {"samrs": "decode-cache", "version": CACHE_VERSION, "key": key, "subset": subset, "rows": len(ds),
            "data": dataset_identity(ds)}
    atomic_write(folder / META, json.dumps(meta, indent=2).encode())
    return DecodeCache(folder, index, decoded=len(ds))


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def _remove_own(folder: Path) -> None:
    """Before a rebuild: the cache's own files and the temporary files of a killed build, nothing else."""
    for name in reversed(FILES):  # meta.json first: never a complete-looking cache with files missing
        (folder / name).unlink(missing_ok=True)
    for name in FILES:
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
