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


def mark_random_weights(target, fontsize: float = 10, *, below_pt: float = 0.0) -> None:
    """The visible warning on a figure made from a random-weight build (gid ``random-weights``): at the bottom of
    a Figure, or at the top of an Axes (``below_pt`` points under its top, e.g. under a title), clipped to it."""
    from matplotlib.axes import Axes
    from matplotlib.transforms import ScaledTranslation

    style = {"fontsize": fontsize, "color": "white", "weight": "bold", "gid": "random-weights", "ha": "center",
             "bbox": {"facecolor": "red", "alpha": 0.85, "pad": 1, "linewidth": 0}}
    if isinstance(target, Axes):
        shift = ScaledTranslation(0, -below_pt / 72, target.figure.dpi_scale_trans)
        target.text(0.5, 0.995, RANDOM_MARK, va="top", transform=target.transAxes + shift, clip_on=True, **style)
    else:
        target.text(0.5, 0.01, RANDOM_MARK, va="bottom", transform=target.transFigure, **style)
