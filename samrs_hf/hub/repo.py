"""Hub side: ``push`` a packaged folder, ``load`` a dataset with its class table attached.

``load`` is ``datasets.load_dataset`` plus attributes; there is no second reading path.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from ..sources.classes import ClassTable
from ..common.errors import SamrsError
from ..common.hub_ids import HubError, HubUnreachableError, check_hub, offline
from .quality import QualityFilter, drop_objects
from .reader import card_says_random, class_table_of, is_package_dir


class PushError(SamrsError, RuntimeError):
    """The upload could not be done (offline, unauthorised, unreachable...)."""

    exit_code = 1  # `samrs push` has always exited 1 here: scripts test for it


def _check_hub_dir(hub_dir: Path) -> None:
    if not (hub_dir / "README.md").is_file() or not is_package_dir(hub_dir):
        raise FileNotFoundError(f"{hub_dir}: not a packaged dataset (needs README.md and data/*.parquet; run `samrs package`)")


def push(hub_dir, repo_id: str, *, private: bool = False, revision: str | None = None, token=None) -> str:
    """Create (if needed) the dataset repo and upload ``hub_dir``; returns the repo URL.

    The token comes from ``token``, ``HF_TOKEN`` or the cached login (huggingface_hub's usual
    places) and is never printed. The repo is created before anything is uploaded, so offline or
    unauthorised runs fail before touching ``hub_dir``; large folders go through the resumable
    ``upload_large_folder`` (huggingface_hub < 2; resume state in ``hub_dir/.cache/huggingface``) or
    ``upload_folder`` (huggingface_hub 2.x, resumable and split into several commits with hf_xet).
    """
    from huggingface_hub import HfApi

    hub_dir = Path(hub_dir)
    _check_hub_dir(hub_dir)
    if "/" not in repo_id:
        raise ValueError(f"--repo-id must be ORG/NAME, got {repo_id!r}")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        ignore = [".samrs-partial/**", ".cache/**"]
        if hasattr(api, "upload_large_folder"):  # huggingface_hub < 2
            api.upload_large_folder(repo_id=repo_id, folder_path=str(hub_dir), repo_type="dataset",
                                    revision=revision, private=private, ignore_patterns=ignore)
        else:  # 2.x removed it; upload_folder is the resumable, multi-commit upload there (hf_xet)
            api.upload_folder(repo_id=repo_id, folder_path=str(hub_dir), repo_type="dataset",
                              revision=revision, ignore_patterns=ignore)
    except Exception as exc:  # huggingface_hub/httpx raise many types; one clear line for all
        raise PushError(f"push of {hub_dir} to {repo_id} failed: {_describe(exc)}") from None
    return str(url)


def _describe(exc: Exception) -> str:
    """One line for a failed upload, by huggingface_hub's (and its transport's) public error types."""
    try:
        from httpx2 import TransportError  # huggingface_hub's transport (httpx before its 2.x)
    except ImportError:
        from httpx import TransportError
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError, OfflineModeIsEnabled

    name = type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, OfflineModeIsEnabled):
        return f"offline mode is enabled (HF_HUB_OFFLINE=1): {text}"
    if isinstance(exc, LocalTokenNotFoundError) or (isinstance(exc, HfHubHTTPError) and status in (401, 403)):
        return f"not authorised ({name}); log in with `hf auth login` or set HF_TOKEN"
    if isinstance(exc, (TransportError, ConnectionError, TimeoutError)):
        return f"cannot reach the Hub ({name}: {text})"
    return f"{name}: {text}"


def local_cache_dir(folder) -> str:
    """A datasets cache folder keyed by the local folder's files (path, size, mtime).

    datasets keys the arrow cache of a local folder by its folder name and README only (measured
    with datasets 5.2), so re-packaging into a folder of the same name with an unchanged card would
    silently load the old rows; keying the cache by the files themselves prevents that.
    """
    import datasets

    folder = Path(folder).resolve()
    h = hashlib.sha1(str(folder).encode())
    for p in sorted(q for q in folder.rglob("*") if q.is_file() and ".cache" not in q.parts):
        st = p.stat()
        h.update(f"{p.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "samrs_local" / h.hexdigest()[:16])


def _subset_of(parts) -> str | None:
    """The ``subset`` value of the first row (one Arrow cell, no image decoded)."""
    import datasets

    for part in parts:
        if isinstance(part, datasets.Dataset) and "subset" in part.column_names and part.num_rows:
            return part.data.column("subset")[0].as_py()
    return None


def _attach(ds, table: ClassTable, random_weights: bool) -> None:
    ds.random_weights = random_weights
    ds.class_table = table
    ds.palette = table.palette
    ds.id2label = dict(enumerate(table.names))
    ds.label2id = {n: i for i, n in enumerate(table.names)}


def _is_hub_id(name) -> bool:
    """``ORG/NAME`` that is not a local path (datasets' own builder names have no ``/``)."""
    name = str(name)
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


@contextmanager
def _offline_mode():
    """HF_HUB_OFFLINE for one call: datasets and huggingface_hub read these module flags per request."""
    import datasets
    from huggingface_hub import constants

    with mock.patch.object(constants, "HF_HUB_OFFLINE", True), \
            mock.patch.object(datasets.config, "HF_HUB_OFFLINE", True):
        yield


def _load_dataset(name, kwargs):
    """``datasets.load_dataset``; a Hub id costs one request when the Hub is unreachable (then the
    datasets cache serves it, or one :class:`HubError` line) instead of ~30 s of retries, and none
    under HF_HUB_OFFLINE."""
    import datasets

    if not _is_hub_id(name):
        return datasets.load_dataset(name, **kwargs)
    try:
        check_hub(name, "dataset", kwargs.get("revision"))  # no request under HF_HUB_OFFLINE
    except HubError as exc:
        if not (offline() or isinstance(exc, HubUnreachableError)):
            raise  # not on the Hub (or gated, or no such revision)
        error = exc
    else:
        return datasets.load_dataset(name, **kwargs)
    with _offline_mode():  # the datasets cache of an earlier download, with no request
        try:
            return datasets.load_dataset(name, **kwargs)
        except ConnectionError:  # not cached: datasets' "Couldn't reach ... (OfflineModeIsEnabled)"
            raise error from None


def load(name_or_path, *, min_score: float | None = None, min_box_iou: float | None = None, **kwargs):
    """``datasets.load_dataset(name_or_path, **kwargs)`` with ``class_table``, ``palette``,
    ``id2label``, ``label2id`` and ``random_weights`` (the card's tag: masks from a random-weight SAM)
    attributes on the result (and on each split of a DatasetDict).

    ``min_score`` / ``min_box_iou`` drop objects below them from the ``objects`` columns (a batched
    ``datasets`` ``map``, see :mod:`.quality`); the ``semantic``/``label`` maps are NOT changed (package
    with ``samrs package --min-score/--min-box-iou`` for maps that agree with the kept objects).

    Attributes do not survive ``map``/``filter`` (they make new objects); re-read them from the
    original or call :func:`class_table_of` on the new ``features``.
    """
    import datasets

    quality_filter = QualityFilter(min_score, min_box_iou)
    if Path(name_or_path).is_dir() and "cache_dir" not in kwargs:
        kwargs["cache_dir"] = local_cache_dir(name_or_path)
    ds = _load_dataset(str(name_or_path) if isinstance(name_or_path, Path) else name_or_path, kwargs)
    parts = list(ds.values()) if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)) else [ds]
    features = parts[0].features
    if features is None or "objects" not in features:
        return ds  # not SAMRS-shaped: callers (e.g. SEP's feature check) say what is wrong
    table = class_table_of(features, _subset_of(parts))
    random_weights = _card_random(name_or_path, kwargs.get("revision"))
    if quality_filter.active:
        ds = drop_objects(ds, quality_filter)
        parts = list(ds.values()) if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)) else [ds]
    for part in parts:
        _attach(part, table, random_weights)
    _attach(ds, table, random_weights)
    return ds


def _card_random(name_or_path, revision) -> bool:
    """The card's random-weights tag: a folder's README, or a Hub dataset's as cached by the load (no request)."""
    from huggingface_hub import try_to_load_from_cache

    if Path(name_or_path).is_dir():
        return card_says_random(Path(name_or_path) / "README.md")
    if not _is_hub_id(name_or_path):
        return False
    cached = try_to_load_from_cache(str(name_or_path), "README.md", repo_type="dataset", revision=revision)
    return isinstance(cached, str) and card_says_random(cached)
