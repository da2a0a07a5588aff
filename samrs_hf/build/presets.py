"""The paper's presets (SOTA / SIOR / FAST) and ``custom``: which reader format and prompt each fixes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """A paper preset: the source format and prompt; windows come from ``TILING_PRESETS[format]``."""

    name: str
    format: str | None
    prompt: str
    about: str


PRESETS: dict[str, Preset] = {
    "sota": Preset("sota", "dota", "H-Box",
                   "SOTA: DOTA-v2.0 train+val, 1024x1024 windows (gap 200, object kept if >= 70 % inside), H-Box"),
    "sior": Preset("sior", "dior", "H-Box",
                   "SIOR: DIOR trainval (+ test when present, marked split=test), 800x800 uncut, H-Box"),
    "fast": Preset("fast", "fair1m", "RH-Box",
                   "FAST: FAIR1M-2.0 train+validation, 600x600 windows (gap 150, >= 50 % inside), RH-Box"),
    "custom": Preset("custom", None, "H-Box",
                     "any reader format (coco included); windows from --tile-size/--gap/--iof-thr, else the "
                     "format's default (dota 1024, fair1m 600, others uncut); prompt from --prompt"),
}
