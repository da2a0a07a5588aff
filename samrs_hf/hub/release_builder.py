"""The official SAMRS release as a ``datasets.GeneratorBasedBuilder`` (subclassed per subset by
``samrs_hf/loading_scripts/{sota,sior,fast}.py``; this module never imports them).

The config takes what ``samrs convert-release`` takes: ``data_dir`` (the subset's root) plus optional
``images_dir`` / ``labels_dir`` / ``variant``, so the loading scripts read every layout the converter reads.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from ..sources.records import Report
from .release import make_plan, release_examples


class SamrsReleaseConfig(datasets.BuilderConfig):
    def __init__(self, *args, val_fraction: float = 0.05, seed: int = 0, strict: bool = False,
                 images_dir=None, labels_dir=None, variant: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.val_fraction = val_fraction
        self.seed = seed
        self.strict = strict
        self.images_dir = images_dir
        self.labels_dir = labels_dir
        self.variant = variant


class SamrsReleaseBuilder(datasets.GeneratorBasedBuilder):
    """Official SAMRS release (``data_dir``) -> train / validation / test in our features."""

    SUBSET: str = ""
    BUILDER_CONFIG_CLASS = SamrsReleaseConfig
    VERSION = datasets.Version("1.0.0")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.report = Report(strict=self.config.strict)
        self.plan = None
        """The :class:`~samrs_hf.hub.release.ReleasePlan` read (its ``split_rule`` says how splits were made)."""

    def _info(self):
        from .card import CITATION
        from .features import samrs_features

        return datasets.DatasetInfo(
            description=f"SAMRS {self.SUBSET.upper()} (official release, pickles read with a restricted unpickler)",
            features=samrs_features(self.SUBSET), citation=CITATION,
            homepage="https://github.com/ViTAE-Transformer/SAMRS",
        )

    def _split_generators(self, dl_manager):
        if not self.config.data_dir:
            raise ValueError(f"{type(self).__name__}: pass data_dir=<the subset's release folder>")
        root = str(Path(self.config.data_dir))
        c = self.config
        self.plan = make_plan(root, self.SUBSET, val_fraction=c.val_fraction, seed=c.seed, report=self.report,
                              images_dir=c.images_dir, labels_dir=c.labels_dir, variant=c.variant)
        return [datasets.SplitGenerator(name=s, gen_kwargs={"root": root, "items": items})
                for s, items in self.plan.by_split().items()]

    def _generate_examples(self, root, items):
        yield from release_examples(root, items, self.SUBSET, self.report)
