"""EdgeTAM's reference predictor (``SAM2ImagePredictor`` of the EdgeTAM fork of sam2), run in a child
process, for the parity test and ``bench_labeling.py --family edgetam``.

The fork (``edgetam-dimos`` on the registry) installs a top-level package named ``sam2`` that clashes
with the real sam2 which SAM 2.1's parity uses. So it is installed into a folder of its own, named by
:data:`ENV` (``SAMRS_EDGETAM_REFERENCE``)::

    pip install --no-deps --target /opt/edgetam edgetam-dimos
    pip install timm hydra-core iopath    # its RepViT trunk is timm's (timm brings torchvision)
    export SAMRS_EDGETAM_REFERENCE=/opt/edgetam

and only a child process sees it, first on its path: it builds a random model with the fork's own
``build_sam2`` and ``configs/edgetam.yaml`` (:data:`SIZES`), saves its checkpoint as the fork saves it
(``{"model": state_dict}``), runs the predictor loop SAMRS ran (``set_image`` once, 20 prompts a
call, ``multimask_output=False``) and writes masks and scores to an ``.npz`` (no pickles).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...common.safe_load import load_arrays

ENV = "SAMRS_EDGETAM_REFERENCE"
INSTALL = (f"pip install --no-deps --target DIR edgetam-dimos && pip install timm hydra-core iopath, "
           f"then set {ENV}=DIR")
# hydra overrides of the fork's configs/edgetam.yaml. The trunk stays the config's timm repvit_m1
# (the narrowest RepViT; the fork's TimmBackbone takes a timm name, not widths); "tiny" narrows the
# neck, prompt encoder and mask decoder from 256 to 32 channels, "edgetam" is the released layout.
SIZES: dict[str, list[str]] = {
    "tiny": ["++model.image_encoder.neck.d_model=32", "++model.image_encoder.neck.position_encoding.num_pos_feats=32"],
    "edgetam": [],
}
_PROMPT_FIELDS = ("boxes", "points", "point_labels", "masks")


def reference_dir() -> Path | None:
    """The folder :data:`ENV` names, if it holds the fork (``sam2/configs/edgetam.yaml``)."""
    value = os.environ.get(ENV, "").strip()
    if value and (Path(value) / "sam2" / "configs" / "edgetam.yaml").is_file():
        return Path(value)
    return None


def missing_reference() -> str | None:
    """Why the EdgeTAM reference cannot run here (a skip reason naming what to install), or None."""
    if reference_dir() is None:
        value = os.environ.get(ENV)
        where = f"{ENV}={value} holds no sam2/configs/edgetam.yaml" if value else f"{ENV} is not set"
        return f"EdgeTAM reference not found ({where}): {INSTALL}"
    absent = [m for m in ("timm", "hydra", "iopath") if importlib.util.find_spec(m) is None]
    if absent:
        return f"the EdgeTAM reference needs {', '.join(absent)}: {INSTALL}"
    return None


@dataclass
class ReferenceRun:
    results: list[list[tuple[np.ndarray, np.ndarray]]]  # [image][prompt batch] -> (bool masks, scores)
    seconds: float  # the timed predictor loop over every image (after the warm-up, if any)


def run_reference(checkpoint: str | Path, images: list[np.ndarray], prompts: list[list], *, size: str = "tiny",
                  seed: int = 0, per_call: int = 20, warmup: bool = False, timeout: float = 1800) -> ReferenceRun:
    """Build the fork's random EdgeTAM (``size``: a key of :data:`SIZES`), save its checkpoint to
    ``checkpoint``, and run its predictor on ``prompts[i]`` (PromptBatches) of ``images[i]``.
    ImportError (the reason) where the reference is not installed; RuntimeError naming the child's
    last output lines if it fails."""
    reason = missing_reference()
    if reason:
        raise ImportError(reason)
    if size not in SIZES:
        raise ValueError(f"EdgeTAM reference size {size!r}: choose one of {', '.join(SIZES)}")
    with tempfile.TemporaryDirectory(prefix="edgetam_ref_") as tmp:
        arrays = {f"image_{i}": im for i, im in enumerate(images)}
        for i, batches in enumerate(prompts):
            for j, batch in enumerate(batches):
                arrays.update({f"{f}_{i}_{j}": getattr(batch, f) for f in _PROMPT_FIELDS if getattr(batch, f) is not None})
        np.savez(Path(tmp) / "jobs.npz", **arrays)
        job = dict(checkpoint=str(Path(checkpoint).resolve()), overrides=SIZES[size], seed=seed, per_call=per_call,
                   warmup=warmup, counts=[len(b) for b in prompts])
        (Path(tmp) / "job.json").write_text(json.dumps(job), encoding="utf-8")
        package_root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(reference_dir()), package_root, *filter(None, [os.environ.get("PYTHONPATH")])]))
        proc = subprocess.run([sys.executable, "-m", __name__, tmp], env=env, cwd=tmp, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"the EdgeTAM reference failed (exit {proc.returncode}):\n{tail}")
        out = load_arrays(Path(tmp) / "out.npz")
        results = [[(out[f"masks_{i}_{j}"], out[f"scores_{i}_{j}"]) for j in range(n)]
                   for i, n in enumerate(job["counts"])]
        return ReferenceRun(results, float(out["seconds"]))


def _build(overrides: list[str], seed: int):
    """The fork's ``build_sam2`` from its ``configs/edgetam.yaml``, random weights: its TimmBackbone
    asks timm for ImageNet weights (a download), so it gets ``create_model`` with ``pretrained=False``;
    BatchNorm statistics and affine terms, position tables and norms are randomised so every
    converted tensor matters to the output."""
    import sam2  # the fork: first on this process's path
    import timm
    import torch
    from sam2 import build_sam
    from sam2.modeling.backbones import timm as timm_backbone

    from .families import _randomize

    if not Path(sam2.__file__).resolve().is_relative_to(reference_dir().resolve()):
        raise RuntimeError(f"sam2 resolved to {sam2.__file__}, not the EdgeTAM fork")

    def create_model(name, **kwargs):
        return timm.create_model(name, **{**kwargs, "pretrained": False})

    timm_backbone.create_model = create_model
    torch.manual_seed(seed)
    model = build_sam.build_sam2("configs/edgetam.yaml", None, device="cpu", hydra_overrides_extra=overrides)
    _randomize(model, seed)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.running_mean.shape
                module.weight.copy_(1 + 0.2 * torch.randn(shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(shape, generator=gen))
                module.running_mean.copy_(0.1 * torch.randn(shape, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=gen))
    return model.eval()


def _child(jobdir: str) -> None:
    """The child process: build, save the checkpoint, predict, write ``out.npz``."""
    import torch
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from ..prompts import PromptBatch
    from .families import reference_predict

    job = json.loads((Path(jobdir) / "job.json").read_text(encoding="utf-8"))
    model = _build(job["overrides"], job["seed"])
    torch.save({"model": model.state_dict()}, job["checkpoint"])
    predictor = SAM2ImagePredictor(model)
    data = load_arrays(Path(jobdir) / "jobs.npz")
    batches = [[PromptBatch(**{f: data.get(f"{f}_{i}_{j}") for f in _PROMPT_FIELDS}, box_kind=None) for j in range(n)]
               for i, n in enumerate(job["counts"])]
    if job["warmup"] and batches and batches[0]:
        reference_predict("sam2", predictor, data["image_0"], batches[0][0][: job["per_call"]])
    out: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    for i, image_batches in enumerate(batches):
        predictor.set_image(data[f"image_{i}"])
        for j, batch in enumerate(image_batches):
            masks, scores = reference_predict("sam2", predictor, data[f"image_{i}"], batch, job["per_call"],
                                              set_image=False)
            out[f"masks_{i}_{j}"], out[f"scores_{i}_{j}"] = masks, scores
    out["seconds"] = np.asarray(time.perf_counter() - start)
    np.savez_compressed(Path(jobdir) / "out.npz", **out)


if __name__ == "__main__":
    _child(sys.argv[1])
