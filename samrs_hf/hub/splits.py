"""Train / validation / test assignment of packaged SAMRS rows.

The paper (App. A.3) keeps 95 % of each subset for pre-training and 5 % for validation. Here the
choice is a stable hash of the *source* image id, so every patch cut from one DOTA/FAIR1M image
lands in the same split (no leakage through overlapping windows) and the assignment does not
depend on row order, machine or Python's salted ``hash``. DIOR's own test images never enter
train/validation: they form a separate ``test`` split.
"""

from __future__ import annotations

import hashlib

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)

# Source splits that mark a held-out test image (ins/<name>.json "split").
SOURCE_TEST_SPLITS = frozenset({"test"})


def hash_fraction(source_image: str, seed: int = 0) -> float:
    """A uniform number in [0, 1) fixed by ``(seed, source_image)``."""
    digest = hashlib.sha1(f"{int(seed)}:{source_image}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(source_image: str, source_split: str | None = None, *, val_fraction: float = 0.05,
                 seed: int = 0) -> str:
    """``test`` for source test images, else ``validation`` for a ``val_fraction`` share of
    source images (by hash) and ``train`` for the rest."""
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f"--val-fraction must lie in [0, 1], got {val_fraction}")
    if source_split is not None and str(source_split).lower() in SOURCE_TEST_SPLITS:
        return TEST
    return VALIDATION if hash_fraction(source_image, seed) < val_fraction else TRAIN
