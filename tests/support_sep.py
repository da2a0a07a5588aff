"""Small SEP runs the tests make (shared by several test files; not a test file)."""

from samrs_hf.sep.pretrain import TrainArgs
from samrs_hf.sep.synthetic import write_synthetic_subset


def sep_subsets(root) -> dict[str, str]:
    """Two learnable synthetic subsets (SOTA 12, SIOR 16 training images, 4 validation each)."""
    return {s: str(write_synthetic_subset(root / s, s, num_train=n, num_val=4, seed=i))
            for i, (s, n) in enumerate({"sota": 12, "sior": 16}.items())}


def small_args(data, out, **kw) -> TrainArgs:
    """A few CPU steps of a tiny ResNet SEP on ``data``; ``kw`` overrides."""
    base = dict(datasets=dict(data), output_dir=str(out), backbone="tiny-resnet", max_steps=4, batch_size=4,
                crop_size=32, hidden_size=8, num_workers=0, checkpoint_every=0, eval_crop_size=32,
                eval_max_samples=2, log_every=1)
    return TrainArgs(**{**base, **kw})
