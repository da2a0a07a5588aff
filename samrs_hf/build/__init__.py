"""Stage 3, ``samrs build``: presets, options and plan, the out dir's state and lock, the patch writer,
the report (a source in, the SAMRS layout of :mod:`samrs_hf.build.layout` out)."""

_LAZY = {  # public names -> their module; ``samrs_hf.build`` was one module before the stage packages
    "run_build": "run",
    "BuildConfig": "config", "BuildPlan": "config", "resolve": "config", "model_weights_id": "config",
    "Preset": "presets", "PRESETS": "presets",
    "BuildRefused": "outdir", "OutputWriteError": "outdir", "STATE_FILE": "outdir",
    "IMAGE_PNG_LEVEL": "writer", "default_writer_threads": "writer",
    "NothingBuilt": "report", "OBJECT_IN_NO_WINDOW": "report", "OUTPUTS_BEYOND_LIMIT": "report",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'samrs_hf.build' has no attribute {name!r}")
