"""Matplotlib figures without pyplot's global state, saved as deterministic PNGs (the same bytes on
every run, so a re-packaged card does not change): shared by the statistics and the overlays."""

from __future__ import annotations

import io

from ..common.files import atomic_write


def new_figure(width_in: float, height_in: float):
    """A Figure on its own Agg canvas (no pyplot: safe in threads and headless)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path) -> None:
    """Deterministic PNG (no software/date metadata), written atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    atomic_write(path, buf.getvalue())


RANDOM_MARK = "RANDOM WEIGHTS: these masks come from an untrained SAM and are noise"


def mark_random_weights(fig, fontsize: float = 10) -> None:
    """The visible warning on a figure made from a random-weight build (gid ``random-weights``)."""
    fig.text(0.5, 0.01, RANDOM_MARK, ha="center", va="bottom", fontsize=fontsize, color="white", weight="bold",
             gid="random-weights", bbox={"facecolor": "red", "alpha": 0.85, "pad": 2, "linewidth": 0})
