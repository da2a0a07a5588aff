"""samrs_hf: SAMRS (NeurIPS 2023) on the Hugging Face stack.

Heavy submodules load on first use so that ``import samrs_hf`` and ``samrs --help`` stay fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "decode_masks": "samrs_hf.features",
    "training_transform": "samrs_hf.features",
    "samrs_features": "samrs_hf.features",
    "load": "samrs_hf.hub",
    "plot": "samrs_hf.visualize",
    "get_class_table": "samrs_hf.classes",
    "CLASS_TABLES": "samrs_hf.classes",
    "PALETTE": "samrs_hf.classes",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samrs_hf' has no attribute {name!r}")
