"""SAMRS's own ``ins/<name>.pkl`` form, written next to ``ins/<name>.json`` by ``samrs build --pkl``.

The SAMRS scripts (``main_sam_hbox_semantic.py`` / ``main_sam_rhbox_semantic.py``) pickled, per
image, a list of ``{'mask': COCO RLE, 'bbox': H-Box}`` (SOTA, SIOR) or ``{'mask', 'rbox': (4, 2)
corners, 'rhbox': RH-Box}`` (FAST) dicts plus ``'category'``, ``'label'`` and ``'size'`` (mask
pixels). Code written for the official release reads these files unchanged. Only plain data is
pickled (dicts, lists, str, int and numpy float64 arrays), so :func:`samrs_hf.common.safe_load.load_pickle`
reads them.
"""

from __future__ import annotations

import pickle

import numpy as np

PROTOCOL = 4


def release_instances(instances: list[dict], box_kind: str | None) -> list[dict]:
    """Our ``ins/*.json`` instances -> SAMRS's instance dicts (same order).

    An RH-Box build stores ``rbox`` corners + ``rhbox`` (the prompt); everything else, and objects
    without corners, store ``bbox`` (the H-Box prompt), as SAMRS's two writers did.
    """
    out = []
    for inst in instances:
        seg = inst["segmentation"]
        rec: dict = {"mask": {"size": [int(v) for v in seg["size"]], "counts": str(seg["counts"])}}
        box = np.asarray(inst["bbox"], dtype=np.float64)
        if box_kind == "RH-Box" and inst.get("rbox") is not None:
            rec["rbox"] = np.asarray(inst["rbox"], dtype=np.float64).reshape(4, 2)
            rec["rhbox"] = box
        else:
            rec["bbox"] = box
        rec["category"] = str(inst["category"])
        rec["label"] = int(inst["label"])
        rec["size"] = int(inst["area"])
        out.append(rec)
    return out


def pkl_bytes(instances: list[dict], box_kind: str | None) -> bytes:
    """Deterministic pickle bytes of :func:`release_instances` (fixed protocol)."""
    return pickle.dumps(release_instances(instances, box_kind), protocol=PROTOCOL)
