"""``samrs build``'s options and what they resolve to: the plan whose fingerprint (the model's weights
included, by hash) decides whether a rerun resumes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..common import hub_ids
from ..common.devices import default_device, parse_device
from ..common.options import option
from ..sam.tiny_random import tiny_random_spec_family
from ..sam.options import ATTN_IMPLEMENTATIONS, AUTO_DTYPE, DTYPE_CHOICES, resolve_dtype
from ..sam.prompts import canonical_prompt_name
from ..sources.tiling import TILING_PRESETS, TilingConfig, tiling_config
from ..sources.readers import FORMATS
from .presets import PRESETS

LAYOUT_VERSION = 1
"""Part of every fingerprint: a change of the output layout makes old builds refuse to resume."""


@dataclass
class BuildConfig:
    """Everything ``samrs build`` takes, declared once: each field is also its command-line option (see
    :mod:`samrs_hf.common.options`). ``None`` means "the preset's choice"."""

    preset: str = option(positional=True, choices=tuple(PRESETS),
                         help="sota, sior, fast (the paper's sets) or custom")
    source: Path = option(metavar="DIR", help="source dataset folder (coco: folder or JSON)")
    out: Path = option(metavar="DIR", help="output folder (the SAMRS layout)")
    format: str | None = option(None, choices=FORMATS,
                                help="source format (custom: required; a preset reads its own format only)")
    prompt: str | None = option(None, metavar="NAME", help=(
        "SAM prompt: H-Box, RH-Box, CP, H-Box-M, R-Box-M, RH-Box-M or a Table 1 combination such as CP+H-Box "
        "(default: the preset's)"))
    splits: tuple[str, ...] | None = option(None, metavar="SPLIT",
                                            help="source splits to read (default: all labelled)")
    images_dir: Path | None = option(None, metavar="DIR", help="coco: folder holding the image files")
    tile_size: int | None = option(None, metavar="PX",
                                   help="window side (0 = uncut); default: the preset's")
    gap: int | None = option(None, metavar="PX", help="overlap between windows")
    iof_thr: float | None = option(None, metavar="F", help="share of an object a window must hold to keep it")
    model: str = option("facebook/sam-vit-huge", help=(
        "any SAM generation (SAM, HQ-SAM, SAM 2.1, SAM 3 tracker, EdgeTAM): Hub id, save_pretrained folder, "
        "segment-anything / HQ-SAM .pth, SAM 2.1 .pt, or tiny-random[-sam-hq|-sam2|-sam3] (default: %(default)s)"))
    dtype: str = option(AUTO_DTYPE, choices=DTYPE_CHOICES, help=(
        "SAM compute dtype (default: auto = bfloat16 on a CPU with native bf16, i.e. avx512_bf16 or amx_bf16, "
        "float32 elsewhere; recorded in build.json)"))
    attn: str | None = option(None, choices=ATTN_IMPLEMENTATIONS, help=(
        "SAM image-encoder attention (default: triton on CUDA when triton is installed, else sdpa); flex "
        "(FlexAttention) and triton (our flash-attention kernel) add the rel-pos bias inside one CUDA kernel in "
        "the global layers instead of an NxN mask, triton in the windowed layers too. Recorded in build.json's "
        "model entry, not fingerprinted: like --compile it changes kernels, not what is computed"))
    device: str | None = option(None, help="torch device (default: this process's accelerate device)")
    limit: int | None = option(None, metavar="N", help="label only the first N source images (reader order)")
    overwrite: bool = option(False, help=(
        "rebuild an out dir started with other options: deletes only the files a samrs build wrote there, and "
        "is refused when --out holds any other file"))
    strict: bool = option(False, help="stop (exit 2) at the first skipped object or image")
    pkl: bool = option(False, help="also write SAMRS's own ins/<name>.pkl")
    image_batch_size: int = option(1, metavar="N", help=(
        "images per image-encoder batch (default: %(default)s; GPU kernels depend on the batch, so only 1 makes "
        "GPU outputs independent of resume and process count)"))
    max_masks_per_chunk: int | None = option(None, metavar="N",
                                             help="boxes per mask-decoder call (default: sized to free memory)")
    compile: bool = option(False, help=(
        "torch.compile the SAM image encoder and mask decoder: faster on a GPU (benchmarks/README.md) after one "
        "to two minutes of compiling"))
    num_workers: int = option(2, metavar="N", help=(
        "threads decoding, cutting and making prompts ahead of SAM (default: %(default)s)"))
    writer_threads: int | None = option(None, metavar="N", help=(
        "threads encoding PNG/RLE/JSON behind SAM (default: the process's share of the cores, 2-8)"))
    progress: bool = option(True, help="no progress bar")

    def __post_init__(self):
        """The checks that need no preset and no torch; :func:`resolve` does the rest."""
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"unknown --dtype {self.dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
        if self.attn is not None and self.attn not in ATTN_IMPLEMENTATIONS:
            raise ValueError(f"unknown --attn {self.attn!r}; choose one of {', '.join(ATTN_IMPLEMENTATIONS)}")
        for name, minimum in (("limit", 0), ("image_batch_size", 1), ("writer_threads", 1), ("num_workers", 0),
                              ("max_masks_per_chunk", 1)):
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class BuildPlan:
    """The resolved options that shape the output files (the fingerprinted part of a build)."""

    preset: str
    format: str
    source: str
    splits: tuple[str, ...] | None
    tiling: TilingConfig | None
    prompt: str
    model: str
    dtype: str
    pkl: bool
    images_dir: str | None = None
    model_weights: str | None = None
    """What the weights are (``sha256:...`` of local files, ``hub:<commit>``); None for tiny-random."""

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("images_dir", "model_weights"):
            if d[key] is None:
                del d[key]  # keeps the fingerprints of builds made before the option existed
        d["splits"] = list(self.splits) if self.splits else None
        d["tiling"] = tiling_dict(self.tiling)
        d["layout_version"] = LAYOUT_VERSION
        return d

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def tiling_dict(cfg: TilingConfig | None) -> dict | None:
    if cfg is None or cfg.uncut:
        return None
    return {"size": cfg.size, "gap": cfg.gap, "iof_thr": cfg.iof_thr, "img_rate_thr": cfg.img_rate_thr,
            "pad_value": list(cfg.pad_value)}


def _model_identity(spec: str) -> str:
    """A local path (checkpoint or folder) as an absolute path, so ``./m.pth`` == ``/x/m.pth``."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


WEIGHT_SUFFIXES = (".json", ".safetensors", ".bin")
"""The files of a ``save_pretrained`` folder that decide the model: config, weights, shard index."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def model_weights_id(spec: str) -> str | None:
    """What ``--model`` holds, not where: the same path with other weights must not resume a build.

    A checkpoint file: its SHA-256 (1.5 s for ViT-H's 2.5 GB, less than loading it). A folder: the hash
    of its config and weight files. A Hub id: the commit it resolves to now (offline: the cached one).
    None where nothing can be said before loading (tiny-random is seeded; a missing path fails to load).
    """
    if tiny_random_spec_family(spec) is not None:  # tiny-random, tiny-random-<family>: seeded
        return None
    path = Path(spec).expanduser()
    try:
        if path.is_file():
            return f"sha256:{_sha256(path)}"
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
            listing = "".join(f"{f.name}\t{_sha256(f)}\n" for f in files)
            return f"sha256:{hashlib.sha256(listing.encode()).hexdigest()}"
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the --model files ({exc.strerror or exc})") from None
    if spec.startswith((".", "/", "~")) or spec.endswith((".pth", ".pt", ".bin")):
        return None
    commit = _hub_commit(spec)
    return f"hub:{commit}" if commit else None


def _hub_commit(repo_id: str) -> str:
    """The commit ``load_sam`` is about to load: it reads the cache first, so the cached snapshot's,
    else the Hub's now (one request; a missing repo or an unreachable Hub is one line, HubError)."""
    return hub_ids.cached_commit(repo_id) or hub_ids.check_hub(repo_id).sha


def build_device_type(device: str | None) -> str:
    """The kind of device the build's processes label on (``cuda``, ``cpu``...): ``--device``'s, else
    accelerate's choice (a GPU when there is one). Checks the spelling only: each process checks that the
    machine has it when SAM loads."""
    return (default_device() if device is None else parse_device(device, "--device")).type


def resolve(config: BuildConfig) -> BuildPlan:
    """Fill the preset's defaults and check the options (errors name the option)."""
    if config.preset not in PRESETS:
        raise ValueError(f"unknown preset {config.preset!r}; known: {', '.join(PRESETS)}")
    preset = PRESETS[config.preset]
    fmt = (config.format or preset.format or "").lower()
    if not fmt:
        raise ValueError("samrs build custom needs --format (dota, dior, dior-r, fair1m, hrsc2016, coco)")
    if preset.format is not None and fmt != preset.format:
        raise ValueError(f"samrs build {preset.name} reads --format {preset.format} only, not {fmt}; "
                         f"use samrs build custom --format {fmt} (or the preset of that dataset)")
    if fmt not in TILING_PRESETS:
        raise ValueError(f"unknown --format {fmt!r}; known: {', '.join(TILING_PRESETS)}")
    tiling = tiling_config(fmt, config.tile_size, config.gap, config.iof_thr)
    device_type = build_device_type(config.device)
    if config.images_dir is not None and fmt != "coco":
        raise ValueError(f"--images-dir applies to --format coco only, not {fmt}")
    splits = tuple(config.splits) if config.splits else None
    return BuildPlan(
        preset=preset.name,
        format=fmt,
        source=str(Path(config.source).expanduser().resolve()),
        splits=splits,
        tiling=None if tiling.uncut else tiling,
        prompt=canonical_prompt_name(config.prompt or preset.prompt),
        model=_model_identity(config.model),
        dtype=resolve_dtype(config.dtype, device_type),
        pkl=bool(config.pkl),
        images_dir=str(Path(config.images_dir).expanduser().resolve()) if config.images_dir is not None else None,
        model_weights=model_weights_id(str(config.model)),
    )
