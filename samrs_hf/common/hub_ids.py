"""Hugging Face Hub ids: the local cache first, then one quick try of the Hub.

Offline, transformers and datasets spend ~30 s per Hub id on huggingface_hub's second round of HEAD
requests with back-off (a warning line per attempt) before their error. Here a Hub id is read from
the local cache without any request; when it is not cached, one ``repo_info`` request (no retry,
``HF_HUB_ETAG_TIMEOUT`` seconds at most) tells a missing repo from an unreachable Hub, and either
ends in one line (:class:`HubError`). With ``HF_HUB_OFFLINE`` set no request is made at all.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from .errors import SamrsError


class HubError(SamrsError, OSError):
    """A Hub id that is neither in the local cache nor on the Hub; the message is one line."""


class HubUnreachableError(HubError):
    """The Hub did not answer (offline, DNS, timeout, HTTP 5xx): a cached copy may still serve."""


def offline() -> bool:
    """``HF_HUB_OFFLINE`` as huggingface_hub read it at import, or as set in the environment since."""
    from huggingface_hub import constants, is_offline_mode

    return is_offline_mode() or (os.environ.get("HF_HUB_OFFLINE", "").upper() in constants.ENV_VARS_TRUE_VALUES)


def check_hub(repo_id: str, repo_type: str = "model", revision: str | None = None):
    """One request to the Hub (no retry): ``repo_id``'s info when it is there, else :class:`HubError`."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError

    missing = f"{repo_id}: not a local folder nor in the local Hugging Face cache"
    if offline():
        raise HubError(f"{missing}, and HF_HUB_OFFLINE is set (unset it to download)")
    try:
        return HfApi().repo_info(repo_id, repo_type=repo_type, revision=revision,
                                 timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HFValidationError as exc:
        raise HubError(f"{repo_id}: neither a local folder nor a Hub id ({str(exc).splitlines()[0]})") from None
    except GatedRepoError:
        raise HubError(f"{repo_id}: gated {repo_type} on the Hub; request access on its page and log in "
                       f"(`hf auth login` or HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise HubError(f"{repo_id}: no revision {revision!r} on the Hub") from None
    except RepositoryNotFoundError:
        raise HubError(f"{repo_id}: not a local folder, and no such {repo_type} on the Hub (a private one "
                       f"needs `hf auth login` or HF_TOKEN)") from None
    except Exception as exc:  # httpx2 connect/timeout errors, HTTP 5xx...: the Hub is not usable now
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise HubUnreachableError(f"{missing}, and the Hub is unreachable ({type(exc).__name__}: {reason})") from None


def cached_commit(repo_id: str, repo_type: str = "model") -> str | None:
    """The commit of the cached snapshot that a cache-first load reads (no request), or None."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(repo_id, "config.json", repo_type=repo_type)
    return Path(cached).parent.name if isinstance(cached, str) else None  # .../snapshots/<commit>/config.json


def from_cache_or_hub(load: Callable[..., Any], spec: str, repo_type: str = "model") -> Any:
    """``load(spec, local_files_only=True)`` from a local folder or the cache; else, after
    :func:`check_hub`, ``load(spec)`` downloads it.

    ``load`` is a transformers ``from_pretrained``-like callable; it raises OSError when the files
    are not there (transformers' rule), which is what sends a cache miss on to the Hub.
    """
    if Path(spec).expanduser().is_dir():
        return load(spec)
    try:
        return load(spec, local_files_only=True)
    except OSError:
        pass
    check_hub(spec, repo_type)
    return load(spec)
