"""``samrs eval-sep``: SAMRS-validation mIoU of an SEP model (paper Table 9 protocol)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..common.devices import check_device, default_device
from ..common.options import option


@dataclass(kw_only=True)
class EvalSepArgs:
    model: str = option(positional=True,
                        help="SEP model folder or Hub id (save_pretrained output of train_sep.py)")
    dataset: list[str] = option(action="append", metavar="SUBSET=PATH_OR_REPO", help=(
        "packaged SAMRS subset; repeat per subset; SUBSET must be one of the model's heads"))
    split: str = option("validation", help="split to evaluate (default validation)")
    crop_size: int = option(512, help="side of the central crop (default 512)")
    batch_size: int = option(8, help="images per forward (default 8)")
    num_workers: int = option(0, help="DataLoader workers (default 0)")
    max_samples: int | None = option(None, help="evaluate only the first N images per subset")
    device: str | None = option(None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    json: str | None = option(None, metavar="OUT", help="also write the scores as JSON")


HELP = "evaluate an SEP model on SAMRS validation sets (512x512 centre crops, mIoU)"
DESCRIPTION = (
    "Per-subset and per-class mIoU of an SEP model on packaged SAMRS subsets. Each image is evaluated on "
    "its central crop; images smaller than the crop are padded with ignored labels."
)
OPTIONS = EvalSepArgs


def run(args: EvalSepArgs) -> int:
    from ..sep.data import load_subsets, parse_dataset_args
    from ..sep.evaluation import evaluate, format_table, json_safe
    from ..sep.modeling_sep import load_sep

    specs = parse_dataset_args(args.dataset)
    device = default_device() if args.device is None else check_device(args.device, "--device")  # before minutes of loading: a typo or a missing GPU is one line
    model = load_sep(args.model, heads=specs)
    data, names = load_subsets(specs, args.split)
    for subset, n in names.items():
        if len(n) != model.config.heads[subset]:
            raise ValueError(f"{subset}: dataset has {len(n)} classes, the model's head {model.config.heads[subset]}")
        trained = model.config.head_labels.get(subset)
        if trained and list(trained) != n:
            raise ValueError(f"{subset}: the dataset's classes {n[:5]}... differ from the model's "
                             f"{list(trained)[:5]}... (another label table or order)")
    model.to(device)
    results = evaluate(model, data, names, crop_size=args.crop_size, batch_size=args.batch_size,
                       num_workers=args.num_workers, max_samples=args.max_samples, device=device)
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "split": args.split, "crop_size": args.crop_size,
                       "results": json_safe(results)},
                      f, indent=2)
    return 0
