"""samrs_hf: SAMRS (NeurIPS 2023) on the Hugging Face stack.

Heavy submodules load on first use so that ``import samrs_hf`` and ``samrs --help`` stay fast.
"""

__version__ = "0.1.0"

_LAZY = {
    "decode_masks": "samrs_hf.hub.features",
    "training_transform": "samrs_hf.hub.features",
    "samrs_features": "samrs_hf.hub.features",
    "objects_as_list": "samrs_hf.hub.features",
    "load": "samrs_hf.hub.repo",
    "plot": "samrs_hf.analysis.visualize",
    "get_class_table": "samrs_hf.sources.classes",
    "CLASS_TABLES": "samrs_hf.sources.classes",
    "PALETTE": "samrs_hf.sources.classes",
    "SamrsError": "samrs_hf.common.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'samrs_hf' has no attribute {name!r}")


# Module paths before the stage packages (0.1.x): ``samrs_hf.engine`` is ``samrs_hf.sam.engine`` now.
# Old imports keep working, as the very module object of the new path, with a DeprecationWarning.
_MOVED_MODULES = {
    "samrs_hf.prefetch": "samrs_hf.common.prefetch",
    "samrs_hf.records": "samrs_hf.sources.records",
    "samrs_hf.classes": "samrs_hf.sources.classes",
    "samrs_hf.geometry": "samrs_hf.sources.geometry",
    "samrs_hf.imageio": "samrs_hf.sources.imageio",
    "samrs_hf.readers": "samrs_hf.sources.readers",
    "samrs_hf.tiling": "samrs_hf.sources.tiling",
    "samrs_hf.samples": "samrs_hf.sources.samples",
    "samrs_hf.inspection": "samrs_hf.sources.inspection",
    "samrs_hf.prompts": "samrs_hf.sam.prompts",
    "samrs_hf.sam_loading": "samrs_hf.sam.loading",
    "samrs_hf.sam_attention": "samrs_hf.sam.attention",
    "samrs_hf.relpos_flash": "samrs_hf.sam.relpos_flash",
    "samrs_hf.engine": "samrs_hf.sam.engine",
    "samrs_hf.rle": "samrs_hf.sam.rle",
    "samrs_hf.layout": "samrs_hf.build.layout",
    "samrs_hf.release_pkl": "samrs_hf.build.release_pkl",
    "samrs_hf.features": "samrs_hf.hub.features",
    "samrs_hf.packaging": "samrs_hf.hub.packaging",
    "samrs_hf.splits": "samrs_hf.hub.splits",
    "samrs_hf.card": "samrs_hf.hub.card",
    "samrs_hf.release": "samrs_hf.hub.release",
    "samrs_hf.coco_export": "samrs_hf.hub.coco_export",
    "samrs_hf.metrics": "samrs_hf.analysis.metrics",
    "samrs_hf.ablation": "samrs_hf.analysis.ablation",
    "samrs_hf.stats": "samrs_hf.analysis.stats",
    "samrs_hf.visualize": "samrs_hf.analysis.visualize",
}


class _MovedModuleFinder:
    """Finds an old module path and hands back the module of its new path (importlib's public hooks)."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        import importlib.util

        new = next((new + fullname[len(old):] for old, new in _MOVED_MODULES.items()
                    if fullname == old or fullname.startswith(old + ".")), None)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(new))


class _MovedModuleLoader:
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        import importlib
        import warnings

        warnings.warn(f"{spec.name} moved to {self.new}; import it from there", DeprecationWarning, stacklevel=4)
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system stamped the old name's spec on the shared module


import sys as _sys  # noqa: E402

_sys.meta_path.insert(0, _MovedModuleFinder)  # before PathFinder: an old package path must not load a second copy of its modules
