"""Stage 3, ``samrs build``: presets, plan, out-dir state and lock, writer, report (a source in, the
SAMRS layout of :mod:`samrs_hf.build.layout` out)."""


def __getattr__(name):
    # ``samrs_hf.build`` was one module before the stage packages: its names stay importable from here.
    import importlib

    try:
        return getattr(importlib.import_module(f"{__name__}.run"), name)
    except AttributeError:
        raise AttributeError(f"module 'samrs_hf.build' has no attribute {name!r}") from None
