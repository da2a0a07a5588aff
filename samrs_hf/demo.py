"""``samrs demo``: the whole pipeline on a tiny bundled scene set, offline, in about a minute.

DIOR-format scenes (generated deterministically by :mod:`samrs_hf.sources.samples`) -> ``samrs build sior``
-> ``samrs package`` -> ``datasets.load_dataset`` -> statistics and overlay PNGs. SAM ViT-H is used
when its weights are already in the Hugging Face cache; otherwise a tiny random-weight SAM (the masks
are then meaningless, but every file and format is the real one).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

VIT_H = "facebook/sam-vit-huge"
TINY = "tiny-random"
NOTEBOOKS_HINT = 'pip install -e ".[notebooks]" && jupyter lab notebooks/01_load_and_explore.ipynb'
"""The notebooks extra brings jupyterlab; the notebooks find ./samrs-demo from the repository root."""


def cached_sam(repo_id: str = VIT_H, cache_dir=None) -> bool:
    """True when the model's config and weights are in the local HF cache (no network asked)."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name):
        return isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir), str)

    return cached("config.json") and (cached("model.safetensors") or cached("pytorch_model.bin"))


def default_model(cache_dir=None) -> str:
    """ViT-H when it is cached, else the tiny random-weight SAM (the demo must run offline)."""
    return VIT_H if cached_sam(VIT_H, cache_dir) else TINY


@dataclass
class DemoResult:
    out: Path
    source: Path
    build: Path
    hub: Path
    stats: Path
    overlays: list[Path]
    model: str
    splits: dict[str, int] = field(default_factory=dict)
    instances: int = 0
    seconds: float = 0.0


def _build_and_package(source: Path, build: Path, hub: Path, model: str, progress: bool) -> None:
    """``samrs build sior`` then ``samrs package``, by their Python functions, printing what they print."""
    from .analysis.stats import write_stats
    from .build import BuildConfig, run_build
    from .cli.cmd_build import summary as build_summary
    from .cli.cmd_package import print_result
    from .hub.packaging import package

    report = run_build(BuildConfig(preset="sior", source=str(source), out=str(build), model=model, overwrite=True,
                                   progress=progress))
    if report:
        print(build_summary(report, build))
    print_result(package([build], hub, name="sior", stats=write_stats))


def run_demo(out="samrs-demo", *, model: str | None = None, n_overlays: int = 8, progress: bool = True) -> DemoResult:
    """Run the pipeline into ``out`` (re-runnable: every step replaces its own outputs)."""
    if n_overlays < 1:  # checked before minutes of building, not after
        raise ValueError(f"--n must be at least 1, got {n_overlays}")
    # The demo never needs the network. huggingface_hub reads this once, at import: set it first.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from .hub.features import decode_masks
    from .hub.repo import load
    from .sources.samples import write_dior_sample
    from .analysis.stats import write_stats
    from .analysis.visualize import visualize

    start = time.perf_counter()
    out = Path(out)
    model = model or default_model()
    source, build, hub = out / "dior", out / "build", out / "hub"
    write_dior_sample(source)
    _build_and_package(source, build, hub, model, progress)

    dataset = load(hub)  # datasets.load_dataset, cached by the folder's files
    splits = {name: len(ds) for name, ds in dataset.items()}
    instances = 0
    for ds in dataset.values():
        for example in ds:
            instances += len(decode_masks(example))  # every RLE decodes at the image's size
    stats_dir = out / "stats"
    write_stats(hub, stats_dir)
    for old in (out / "overlays").glob("*.png"):  # an earlier run with a larger --n wrote more
        old.unlink()
    overlays = visualize(hub, out / "overlays", n=n_overlays)
    return DemoResult(out, source, build, hub, stats_dir, overlays, model, splits, instances,
                      time.perf_counter() - start)


def demo_hub(cwd=None) -> Path:
    """The demo's packaged dataset for the notebooks: ``$SAMRS_DEMO_DIR``, else the ``samrs-demo`` that the Quick
    start writes at the repository root (Jupyter runs a notebook in ``notebooks/``, so that is its parent).
    When it is missing the demo is run there, and says so: never silently, never inside ``notebooks/``."""
    cwd = Path(cwd or Path.cwd())
    root = cwd.parent if cwd.name == "notebooks" else cwd
    demo = Path(os.environ.get("SAMRS_DEMO_DIR") or root / "samrs-demo")
    if not (demo / "hub" / "README.md").is_file():
        print(f"{demo} has no demo dataset: running `samrs demo --out {demo}` (offline, about a minute)")
        run_demo(demo, progress=False)
    return demo / "hub"


def summary(r: DemoResult) -> str:
    random_note = ("  (random weights: the masks are noise; with facebook/sam-vit-huge in the HF cache the "
                   "demo uses ViT-H)" if r.model == TINY else "")
    split_text = ", ".join(f"{k}: {v}" for k, v in r.splits.items())
    return "\n".join([
        f"SAMRS demo finished in {r.seconds:.0f} s with model {r.model}{random_note}",
        "",
        f"  source scenes (DIOR format)  {r.source}",
        f"  build (images/ gray/ color/ ins/ build.json)  {r.build}",
        f"  Hub dataset (parquet + README.md)  {r.hub}   [{split_text}; {r.instances} instances]",
        f"  statistics (Figs. 5-6, Table 2 row)  {r.stats}",
        f"  overlays (image | semantic | instances)  {r.overlays[0].parent if r.overlays else '-'}",
        "",
        "Next:",
        f"  python -c \"import samrs_hf; ds = samrs_hf.load('{r.hub}'); print(ds)\"",
        f"  samrs visualize {r.hub} --split train --n 4 --out {r.out / 'more-overlays'}",
        "  samrs build sota --source DOTA-v2.0/ --out sota-build/   (real data; ViT-H by default)",
        f"  samrs push {r.hub} --repo-id YOUR_ORG/samrs-demo",
        f"  {NOTEBOOKS_HINT}",
    ])
