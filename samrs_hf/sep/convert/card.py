"""README.md of a converted official SEP checkpoint: where the weights come from (file and SHA-256), how the
authors pre-trained them, their Table 9 scores, the check that was run, license and citation."""

from __future__ import annotations

from ...hub.card import CITATION
from ..card import USAGE

INITS = {"imp": "IMP (ImageNet-1k supervised weights) + SEP",
         "rsp": "RSP (MillionAID remote-sensing supervised pre-training, ViTAE-Transformer/RSP) + SEP",
         "none": "SEP from random initialisation"}
"""``--init``: what the authors' ``--init_backbone`` started the encoder from (the file does not record it)."""

TABLE9 = {  # paper App. A.5, Table 9: SAMRS validation mIoU (%), 512x512 centre crops
    ("resnet50", "none"): (64.79, 82.74, 39.32, 62.28),
    ("resnet50", "imp"): (73.59, 88.59, 47.10, 69.76),
    ("resnet50", "rsp"): (76.03, 90.66, 47.62, 71.44),
    ("swin-t", "imp"): (81.53, 94.64, 57.91, 78.03),
}

TABLE9_LABELS = {"none": "SEP", "imp": "IMP+SEP", "rsp": "RSP+SEP"}

RECIPE = [
    "SAMRS SOTA + SIOR + FAST training sets (95% of each subset), one head per subset, the three losses summed",
    "80k iterations, collective batch 96 (12 per GPU on 8 GPUs), 224x224 crops after random scaling (0.5-2x), "
    "flips, 90-degree rotations and colour jitter; ImageNet mean/std on /255 pixels",
]
OPTIMIZER = {
    "resnet": "AdamW (0.9, 0.999), lr 1e-3, weight decay 5e-2, cosine decay to 5e-6",
    "swin": "AdamW (0.9, 0.999), lr 6e-5, weight decay 1e-2 (none on norms and relative position bias tables), "
            "cosine decay to 0",
}

LICENSE = ("The SAMRS repository (ViTAE-Transformer/SAMRS) publishes no license for its code or released weights; "
           "ask the authors before any use beyond research. The weights were trained on SAMRS, whose labels derive "
           "from DOTA, DIOR and FAIR1M: those datasets allow academic / research use only and DOTA forbids "
           "commercial use.")


def _table9_lines(backbone: str, init: str | None) -> list[str]:
    rows = [(i, TABLE9[(backbone, i)]) for i in INITS if (backbone, i) in TABLE9 and init in (None, i)]
    if not rows:
        return ["The paper reports no Table 9 scores for this backbone."]
    lines = ["| pre-training | SOTA | SIOR | FAST | average |", "|---|---|---|---|---|"]
    lines += [f"| {TABLE9_LABELS[i]} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for i, row in rows]
    if init is None:
        lines += ["", "The checkpoint does not record its initialisation; the rows above are every UperNet row of "
                      "this backbone."]
    return lines


def converted_card(*, source, sha256: str, form: str, backbone: str, init: str | None, meta: dict,
                   dropped: dict, max_diff: dict, heads: dict | None, added: dict | None = None) -> str:
    """The model card of a converted official checkpoint (full SEP model or encoder)."""
    tag = "image-segmentation" if heads else "image-feature-extraction"
    front = ["---", "library_name: transformers", f"pipeline_tag: {tag}", "license: other",
             "license_name: samrs-no-license-published",
             "tags: [semantic-segmentation, remote-sensing, samrs, sep, upernet, converted]", "---"]
    what = (f"UperNet ({backbone}) pre-trained with SEP, one head per subset "
            f"({', '.join(f'{k}: {v} classes' for k, v in heads.items())})" if heads
            else f"The {backbone} encoder of an SEP-pre-trained UperNet (a transformers backbone)")
    progress = ", ".join(f"{k} {v}" for k, v in meta.items()) or "not recorded"
    lines = front + [
        "", "# SAMRS SEP weights (converted)", "",
        f"{what}, converted exactly from the authors' released checkpoint of *SAMRS: Scaling-up Remote Sensing "
        "Segmentation Dataset with Segment Anything Model* (NeurIPS 2023).", "",
        "| source | value |", "|---|---|",
        f"| file | `{source.name}` ({form} form) |", f"| SHA-256 | `{sha256}` |",
        f"| initialisation | {INITS[init] if init else 'not given (--init)'} |", f"| training progress | {progress} |",
        "| left out | " + ("; ".join(f"`{k}`: {v}" for k, v in dropped.items()) or "nothing") + " |",
        "| added | " + ("; ".join(f"`{k}`: {v}" for k, v in (added or {}).items()) or "nothing") + " |",
        "", "## Pre-training recipe (paper Sec. 4.1, main_pretrain.py)", "", *[f"- {r}" for r in RECIPE],
        f"- {OPTIMIZER['swin' if backbone.startswith('swin') else 'resnet']}",
        "", "## SAMRS validation mIoU (paper Table 9, %)", "", *_table9_lines(backbone, init),
        "", "## Conversion check", "",
        "Every tensor of the file's `state_dict` was mapped (BatchNorm running statistics included) and every "
        "parameter and buffer of this model was filled. On seeded 224x224 and 96x96 inputs, the outputs differ from a plain-torch "
        "restatement of the official forward (`samrs_hf.sep.convert.reference`) by at most: "
        + ", ".join(f"{k} {v:.2e}" for k, v in max_diff.items()) + ".", "",
    ]
    if heads:
        lines += USAGE
    else:
        cls = "SwinBackbone" if backbone.startswith("swin") else "ResNetBackbone"
        lines += ["## Use", "", "```python", f"from transformers import {cls}",
                  f"backbone = {cls}.from_pretrained(PATH_OR_REPO)", "```", "",
                  "`builders/train_sep.py --backbone PATH_OR_REPO` starts SEP or fine-tuning from it.", ""]
    return "\n".join(lines + ["## License", "", LICENSE, "", "## Citation", "", "```bibtex", CITATION, "```", ""])


__all__ = ["converted_card", "INITS", "TABLE9", "RECIPE", "OPTIMIZER"]
