"""Stage 4, Hub datasets: features, packaging, card, push and load, the official release, COCO export."""


def __getattr__(name):
    # ``samrs_hf.hub`` was one module (push, load) before the stage packages: its names stay importable.
    import importlib

    try:
        return getattr(importlib.import_module(f"{__name__}.repo"), name)
    except AttributeError:
        raise AttributeError(f"module 'samrs_hf.hub' has no attribute {name!r}") from None
