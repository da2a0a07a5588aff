"""``samrs demo``: build, package, load, chart and draw a tiny bundled scene set, offline."""

from __future__ import annotations

from dataclasses import dataclass

from ..common.options import option


@dataclass(kw_only=True)
class DemoArgs:
    out: str = option("samrs-demo", help="output folder (default ./samrs-demo)")
    model: str | None = option(None, help="SAM to use (default: facebook/sam-vit-huge if cached, else tiny-random)")
    n: int = option(8, help="overlay PNGs to write (default 8)")


HELP = "offline end-to-end run on bundled DIOR-format scenes (build -> package -> load -> stats -> overlays)"
DESCRIPTION = (
    "Writes a small deterministic DIOR-format scene set, runs `samrs build sior` on it (SAM ViT-H when "
    "facebook/sam-vit-huge is in the Hugging Face cache, else tiny-random), packages it as a Hub dataset "
    "folder, loads it back with datasets.load_dataset, writes statistics and overlay PNGs, and prints "
    "where everything is. Needs no network."
)
OPTIONS = DemoArgs


def run(args: DemoArgs) -> int:
    from ..demo import run_demo, summary

    print(summary(run_demo(args.out, model=args.model, n_overlays=args.n)))
    return 0
