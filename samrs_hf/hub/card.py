"""The README.md of a packaged SAMRS dataset: YAML front matter that ``datasets`` reads + a card.

The YAML is made by ``huggingface_hub``'s ``DatasetCardData`` and ``datasets``' own
``DatasetInfosDict.to_dataset_card_data`` (the same code ``push_to_hub`` uses), so the features,
ClassLabel names included, come back exactly from ``load_dataset(HUB_DIR)``.
Nothing time- or machine-dependent goes in: the same input gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..sources.classes import ABBREVIATIONS, ClassTable
from ..build.layout import png_bytes
from ..common.files import atomic_write
from .quality import card_lines as quality_lines

SWATCH_DIR = "palette"
LICENSE_NOTE = (
    "SAMRS labels are derived from DOTA, DIOR and FAIR1M (and their images are embedded here); "
    "those datasets allow academic / research use only and DOTA forbids commercial use. The same "
    "terms apply to this dataset."
)
CITATION = """@inproceedings{wang2023samrs,
  title     = {{SAMRS}: Scaling-up Remote Sensing Segmentation Dataset with Segment Anything Model},
  author    = {Wang, Di and Zhang, Jing and Du, Bo and Xu, Minqiang and Liu, Lin and Tao, Dacheng and Zhang, Liangpei},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS), Datasets and Benchmarks Track},
  year      = {2023}
}"""

SOURCE_OF = {"sota": "DOTA-v2.0", "sior": "DIOR / DIOR-R", "fast": "FAIR1M-2.0", "hrsc2016": "HRSC2016"}
PAPER = "2305.02034"
"""arXiv id of the SAMRS paper: the ``arxiv:`` tag and the link in the text make the Hub show its paper page."""
RANDOM_WEIGHTS_TAG = "random-weights"
"""Tag of a dataset whose masks came from a random-weight SAM: the Hub shows it, and
:func:`samrs_hf.hub.reader.open_folder` reads it so every figure made from the package says so."""
TERMS = {  # subset -> (Hub license_name, the source dataset's terms page, source_datasets entry)
    "sota": ("dota-terms", "https://captain-whu.github.io/DOTA/dataset.html", "extended|other-dota-v2.0"),
    "sior": ("dior-terms", "https://gcheng-nwpu.github.io/#Datasets", "extended|other-dior"),
    "fast": ("fair1m-terms", "https://www.gaofen-challenge.com/benchmark", "extended|other-fair1m-2.0"),
    "hrsc2016": ("hrsc2016-terms", "https://www.kaggle.com/datasets/guofeng/hrsc2016", "extended|other-hrsc2016"),
}
"""The three SAMRS sources (and HRSC2016) allow academic use only; a custom build's terms are its
source's, which the card cannot know (``license: unknown``)."""


def write_palette_swatches(table: ClassTable, figures_dir) -> list[str]:
    """A 16x16 PNG per class colour (Hub markdown strips inline styles, images survive)."""
    out = Path(figures_dir) / SWATCH_DIR
    names = []
    for i, rgb in enumerate(table.palette):
        tile = np.empty((16, 16, 3), np.uint8)
        tile[:] = rgb
        path = out / f"{i:02d}.png"
        atomic_write(path, png_bytes(tile))
        names.append(f"{Path(figures_dir).name}/{SWATCH_DIR}/{path.name}")
    return names


def yaml_header(result, features) -> str:
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    split_dict = SplitDict()
    for split, n in result.splits.items():
        split_dict.add(SplitInfo(name=split, num_bytes=result.num_bytes[split], num_examples=n))
    download_size = sum((result.to / f).stat().st_size for files in result.files.values() for f in files)
    info = DatasetInfo(features=features, splits=split_dict, download_size=download_size,
                       dataset_size=sum(result.num_bytes.values()))

    subset = result.table.subset
    random = any(rnd for _, rnd in _models(result.builds))
    terms = TERMS.get(subset)
    license = ({"license": "other", "license_name": terms[0], "license_link": terms[1]} if terms
               else {"license": "unknown"})
    card_data = DatasetCardData(
        pretty_name=f"SAMRS {result.name}",
        **license,
        annotations_creators=["machine-generated"],
        source_datasets=[terms[2] if terms else "extended|other"],
        task_categories=["image-segmentation", "object-detection"],
        task_ids=["semantic-segmentation", "instance-segmentation"],
        tags=["remote-sensing", "aerial-imagery", "segment-anything", "sam", "samrs", subset, f"arxiv:{PAPER}",
              *([RANDOM_WEIGHTS_TAG] if random else [])],
        size_categories=[size_category(result.num_rows)],
        configs=[{
            "config_name": "default",
            "data_files": [{"split": s, "path": f"data/{s}-*"} for s in result.splits],
        }],
    )
    info.config_name = "default"
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    return "---\n" + card_data.to_yaml() + "\n---\n"


def _models(builds) -> list[tuple[str, bool]]:
    seen = []
    for b in builds:
        model = b.get("model") or {}
        entry = (str(model.get("spec", "unknown")), bool(model.get("random", False)))
        if entry not in seen:
            seen.append(entry)
    return seen


def body(result, features) -> str:
    table = result.table
    subset = table.subset
    models = _models(result.builds)
    lines = [f"# SAMRS {result.name}", ""]
    random_models = [spec for spec, rnd in models if rnd]
    if random_models:
        lines += [
            "> [!WARNING]",
            f"> **RANDOM MODEL WEIGHTS.** The masks of this dataset were made with `{', '.join(random_models)}`, "
            "a SAM with randomly initialised weights (a pipeline test). They are noise, NOT SAMRS labels: "
            "do not train or evaluate on them.",
            "",
        ]
    lines += [
        f"[SAMRS](https://arxiv.org/abs/{PAPER}) (Wang et al., NeurIPS 2023 Datasets and Benchmarks) turns "
        "remote-sensing *object detection* datasets into *segmentation* datasets: every annotated box is given to the Segment Anything Model "
        "(SAM) as a prompt and the predicted mask becomes the object's instance mask; painting the masks with "
        "their class ids gives a semantic map (255 = not covered by any mask). The three subsets are SOTA "
        "(from DOTA-v2.0), SIOR (from DIOR) and FAST (from FAIR1M-2.0).",
        "",
        f"This repository holds the **{subset.upper()}** subset"
        + (f" (source: {SOURCE_OF[subset]})" if subset in SOURCE_OF else "") + ", packaged as parquet shards "
        "that load with `datasets.load_dataset` (no loading script).",
        "",
        "## How it was made",
        "",
        "| build | source format | prompt | model | random weights |",
        "|---|---|---|---|---|",
    ]
    for b in result.builds:
        model = b.get("model") or {}
        lines.append(
            f"| `{Path(b.get('path', '?')).name}` | {b.get('format', '?')} | {b.get('prompt', '?')} | "
            f"`{model.get('spec', '?')}` ({model.get('family', 'sam')}) | {'**YES**' if model.get('random') else 'no'} |"
        )
    lines += ["", split_sentence(result), ""]
    lines += [
        "| split | images |",
        "|---|---|",
    ]
    lines += [f"| {s} | {n} |" for s, n in result.splits.items()]
    lines += ["", "## Skipped inputs", ""] + skipped_lines(result)
    lines += ["", "## Features", "", "| feature | type | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {t} | {m} |" for k, t, m in FEATURE_ROWS]
    lines += ["", "## Semantic segmentation with transformers", SEMANTIC_SEGMENTATION.strip()]
    lines += ["", "## Classes", "", "| id | name | abbreviation | colour | RGB | instances |", "|---|---|---|---|---|---|"]
    abbrev = ABBREVIATIONS.get(subset, ())
    for i, name in enumerate(table.names):
        rgb = table.palette[i]
        lines.append(
            f"| {i} | {name} | {abbrev[i] if i < len(abbrev) else ''} | ![{name}](figures/{SWATCH_DIR}/{i:02d}.png) | "
            f"{rgb[0]},{rgb[1]},{rgb[2]} | {result.instances.get(i, 0)} |"
        )
    lines.append("| 255 | (unlabelled) | | | 255,255,255 | |")
    if result.quality is not None:
        lines += ["", "## Mask quality", ""] + quality_lines(result.quality, result.quality_filter, result.quality_drops)
    stats_figs = [f for f in result.figures if not f.startswith(f"figures/{SWATCH_DIR}/")]
    lines += ["", "## Statistics", ""]
    if stats_figs:
        lines += [f"![{Path(f).stem}]({f})" for f in stats_figs]
    else:
        lines.append("No statistics figures were generated for this package (`--no-stats`); "
                     "`samrs stats` draws them.")
    lines += ["", "## Usage", "", "```python", USAGE.strip(), "```", "",
              "## License", "", LICENSE_NOTE, "", *license_lines(subset),
              "", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def split_sentence(result) -> str:
    """Which rule made the splits: the release's own lists when it had them, else the stable hash."""
    if result.split_rule:
        return result.split_rule + " DIOR's own test images (SIOR) form a separate `test` split."
    return ("Splits follow the paper (App. A.3): 95 % / 5 % train / validation per subset, assigned by a stable hash "
            f"(seed {result.seed}, validation fraction {result.val_fraction}) of the **source** image id, so all "
            "patches of one large image fall into the same split. DIOR's own test images form a separate `test` "
            "split and never enter train/validation.")
def license_lines(subset: str) -> list[str]:
    """Where the source dataset's terms are (the card's ``license_link``)."""
    if subset in TERMS:
        return [f"Terms of {SOURCE_OF[subset]}: <{TERMS[subset][1]}>."]
    return [f"This `{subset}` build's images come from its own source: that source's terms apply "
            "(hence `license: unknown`)."]


def skipped_lines(result) -> list[str]:
    """What the builds dropped (from their build.json) and what packaging dropped, by kind."""
    builds = [(name, skips) for name, skips in result.build_skips() if skips is not None]
    packaged = result.skips
    if packaged.total == 0 and all(s.total == 0 for _, s in builds):
        whose = "the build(s) and packaging" if len(builds) == len(result.builds) else "packaging"
        return [f"None: {whose} dropped nothing."]
    lines = []
    if builds:
        lines += ["Dropped by the build(s), before packaging (from each `build.json`):", "",
                  "| build | images | objects | by kind |", "|---|---|---|---|"]
        lines += [f"| `{name}` | {s.images} | {s.objects} | "
                  + (", ".join(f"`{k}`: {n}" for k, n in s.kinds.items()) or "none") + " |" for name, s in builds]
        lines.append("")
    if packaged.total == 0:
        return lines + ["Dropped while packaging: nothing."]
    lines += [f"Dropped while packaging: {packaged.what} (counts by kind):", ""]
    lines += [f"- `{kind}`: {n}" for kind, n in packaged.kinds.items()]
    lines.append("")
    skipped = result.report.skips
    lines += [f"- {Path(p.where).name}: {_relative(p.message, result.builds)}" for p in skipped[:20]]
    if len(skipped) > 20:
        lines.append(f"- ... and {len(skipped) - 20} more")
    return lines


def _relative(message: str, builds) -> str:
    """Paths in a message as ``<build folder name>/...``: the card names no local folder."""
    for b in builds:
        if b.get("path"):
            message = message.replace(str(Path(b["path"])) + "/", Path(b["path"]).name + "/")
    return message


FEATURE_ROWS = (
    ("image", "Image", "the image as labelled (PNG patch, or the source JPEG for uncut DIOR images)"),
    ("semantic", "Image (mode L)", "class id per pixel (0-based: class 0 is a real class), 255 where no mask covers the pixel"),
    ("label", "Image (mode L)", "the `semantic` map again, under the name transformers' semantic-segmentation example reads"),
    ("objects", "dict of lists", "one entry per object in each list (the Hub's detection convention, e.g. `objects[\"bbox\"][k]`)"),
    ("objects.id", "list of int64", "object id, unique in the whole dataset"),
    ("objects.category", "list of ClassLabel", "class id (names below)"),
    ("objects.bbox", "list of 4 x float32", "prompt box, COCO `[x, y, w, h]`"),
    ("objects.rbox", "list of (8 x float32 or null)", "oriented box corners `x1 y1 ... x4 y4` when the source has one"),
    ("objects.segmentation", "list of {size, counts}", "instance mask, COCO compressed RLE"),
    ("objects.area", "list of int64", "mask pixel count"),
    ("objects.score", "list of (float32 or null)", "SAM's predicted IoU"),
    ("objects.truncated", "list of (bool or null)", "object cut by the patch border"),
    ("objects.box_iou", "list of float32", "IoU of the mask's tight box with the prompt box (see Mask quality)"),
    ("objects.fill", "list of float32", "mask area / prompt box area (see Mask quality)"),
    ("image_id", "int64", "unique in the dataset, the same in every packaging: 63 bits of the SHA-256 of `file_name`"),
    ("file_name", "string", "patch / image name"),
    ("source_image", "string", "id of the source image the patch was cut from"),
    ("width, height", "int32", "image size"),
    ("subset", "string", "sota / sior / fast"),
)

SEMANTIC_SEGMENTATION = """
`id2label.json` (class id -> name) sits beside the data, and the `image` + `label` columns are what
transformers' `examples/pytorch/semantic-segmentation/run_semantic_segmentation.py` reads, so it runs on
this repository as it is: `--dataset_name <this repo> --remove_unused_columns False` (the script's own
requirement). The labels are **already 0-based**: never pass `--do_reduce_labels` (it would turn class 0
into "ignore" and shift every class). **255 = unlabelled**: ignore it in the loss (transformers' UperNet,
SegFormer, ... ignore 255 by default). **Class 0 is a real class** (the first row of the table below): the
script's `compute_metrics` passes `ignore_index=0` to `mean_iou`, which leaves class 0 out of its scores;
use `ignore_index=255` for a metric over all classes.
"""

USAGE = """
from datasets import load_dataset
from samrs_hf import decode_masks   # pip install samrs_hf (or use pycocotools.mask.decode directly)

ds = load_dataset("<this repo>", split="train")
ex = ds[0]
ex["image"], ex["semantic"]          # PIL images
ex["objects"]["bbox"]                 # COCO [x, y, w, h] per object; also "category", "area", "id", ...
masks = decode_masks(ex)              # [N, H, W] bool
names = ds.features["objects"]["category"].feature.names
"""


def render_readme(result, features) -> str:
    return yaml_header(result, features) + "\n" + body(result, features)


def write_card(result, features) -> Path:
    path = Path(result.to) / "README.md"
    atomic_write(path, render_readme(result, features).encode("utf-8"))
    return path


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` bucket."""
    if n < 1000:
        return "n<1K"
    for lo, hi, label in ((1e3, 1e4, "1K<n<10K"), (1e4, 1e5, "10K<n<100K"), (1e5, 1e6, "100K<n<1M")):
        if n < hi:
            return label
    return "1M<n<10M" if n < 1e7 else "10M<n<100M"
