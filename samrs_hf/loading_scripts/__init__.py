"""``datasets.GeneratorBasedBuilder`` modules for SAMRS's official release layout, one per subset
(``sota``, ``sior``, ``fast``). Also reachable as the repository's top-level ``loading_scripts/``."""

from pathlib import Path


def load_builder_class(subset: str):
    """The builder of ``loading_scripts/<subset>.py``: datasets >= 4 runs no scripts, so we import it.
    The scripts live in the package (``samrs_hf/loading_scripts``) so that a wheel install has them."""
    import importlib
    import importlib.util

    if not subset.isidentifier() or importlib.util.find_spec(f"{__name__}.{subset}") is None:
        raise FileNotFoundError(f"{Path(__file__).parent}: no loading script for subset "
                                f"{subset!r}")
    return importlib.import_module(f"{__name__}.{subset}").BUILDER
