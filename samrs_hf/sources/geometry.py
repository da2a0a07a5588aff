"""Box and polygon geometry shared by readers, tiling and prompts.

Conventions: pixels, origin top-left, x right, y down. An R-Box is ``(cx, cy, w, h, theta)`` with
theta in radians and the ``w`` side running along ``(cos theta, sin theta)`` in y-down
coordinates (HRSC2016's ``mbox_*`` fields, mmrotate's ``le90``); for theta = 0 its corners run
clockwise on screen from the top-left.
"""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon, box as shapely_box


def as_polygon(points) -> np.ndarray:
    """(N, 2) float64 array from 2N numbers or N pairs."""
    arr = np.asarray(points, dtype=np.float64)
    return arr.reshape(-1, 2)


def polygon_to_hbox(polygon) -> tuple[float, float, float, float]:
    """Minimum circumscribed horizontal rectangle (the paper's RH-Box) as xyxy."""
    p = as_polygon(polygon)
    return (float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max()))


def hbox_to_polygon(hbox) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in hbox)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def rbox_to_polygon(cx: float, cy: float, w: float, h: float, theta: float) -> np.ndarray:
    """(4, 2) corners of an R-Box, clockwise on screen for theta = 0, starting top-left."""
    u = np.array([math.cos(theta), math.sin(theta)])  # along w
    v = np.array([-math.sin(theta), math.cos(theta)])  # along h
    c = np.array([cx, cy], dtype=np.float64)
    hw, hh = w / 2.0, h / 2.0
    return np.stack([c - hw * u - hh * v, c + hw * u - hh * v, c + hw * u + hh * v, c - hw * u + hh * v])


def polygon_to_rbox(polygon) -> tuple[float, float, float, float, float]:
    """R-Box of a 4-corner polygon: its minimum-area rotated rectangle, w along the first edge.

    theta is normalised to [-pi/2, pi/2) (le90); w and h keep the first and second edge lengths.
    """
    p = as_polygon(polygon)
    if len(p) == 4 and _is_rectangle(p):
        rect = p
    else:
        mrr = Polygon(p).minimum_rotated_rectangle
        if mrr.geom_type != "Polygon":  # degenerate (line or point)
            x0, y0, x1, y1 = polygon_to_hbox(p)
            return ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0.0)
        rect = np.asarray(mrr.exterior.coords)[:4]
    e1 = rect[1] - rect[0]
    e2 = rect[2] - rect[1]
    w, h = float(np.hypot(*e1)), float(np.hypot(*e2))
    theta = math.atan2(e1[1], e1[0])
    if theta >= math.pi / 2:
        theta -= math.pi
    elif theta < -math.pi / 2:
        theta += math.pi
    cx, cy = rect.mean(axis=0)
    return (float(cx), float(cy), w, h, float(theta))


def _is_rectangle(p: np.ndarray, tol: float = 1e-6) -> bool:
    edges = np.roll(p, -1, axis=0) - p
    dots = np.abs(np.sum(edges * np.roll(edges, -1, axis=0), axis=1))
    lengths = np.linalg.norm(edges, axis=1)
    scale = max(float(lengths.max()) ** 2, 1.0)
    return bool(np.all(dots <= tol * scale)) and bool(np.all(lengths > 0))


def polygon_area(polygon) -> float:
    """Unsigned area (shoelace), whatever the winding."""
    p = as_polygon(polygon)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def is_clockwise(polygon) -> bool:
    """True when the corners run clockwise on screen (y down)."""
    p = as_polygon(polygon)
    x, y = p[:, 0], p[:, 1]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) > 0


def fraction_inside(polygon, window) -> float:
    """Share of the polygon's area inside ``window`` (xyxy): BboxToolkit's 'iof'.

    A zero-area polygon (FAIR1M has some) has no meaningful share; its H-Box, widened to one
    pixel on a zero side, is used instead so that such objects are assigned, not lost.
    """
    p = as_polygon(polygon)
    x0, y0, x1, y1 = (float(v) for v in window)
    win = shapely_box(x0, y0, x1, y1)
    area = polygon_area(p)
    if area > 0:
        poly = Polygon(p)
        if not poly.is_valid:  # self-intersecting corner order: use the hull
            poly = poly.convex_hull
            area = poly.area
        return float(poly.intersection(win).area / area) if area > 0 else 0.0
    bx0, by0, bx1, by1 = polygon_to_hbox(p)
    bx1 = bx1 if bx1 > bx0 else bx0 + 1.0
    by1 = by1 if by1 > by0 else by0 + 1.0
    hb = shapely_box(bx0, by0, bx1, by1)
    return float(hb.intersection(win).area / hb.area)


def fractions_inside(polygons, windows) -> np.ndarray:
    """[n_polygons, n_windows] matrix of :func:`fraction_inside` (vectorised for the common case)."""
    polys = [as_polygon(p) for p in polygons]
    wins = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(polys), len(wins)), dtype=np.float64)
    if not polys or not len(wins):
        return out
    hb = np.array([polygon_to_hbox(p) for p in polys])
    for i, p in enumerate(polys):
        # Only windows the H-Box touches can hold part of the polygon.
        touch = np.nonzero(
            (hb[i, 0] <= wins[:, 2]) & (hb[i, 2] >= wins[:, 0]) & (hb[i, 1] <= wins[:, 3]) & (hb[i, 3] >= wins[:, 1])
        )[0]
        for j in touch:
            out[i, j] = fraction_inside(p, wins[j])
    return out


def object_corners(obj) -> np.ndarray:
    """(4, 2) corners of a record's oriented box: its polygon, else its R-Box, else its H-Box.

    Tiling (iof) and the R-Box-based prompts share this so that an object given only as an R-Box
    (``cx, cy, w, h, theta``) is treated exactly like its four corners.
    """
    if getattr(obj, "polygon", None) is not None:
        return as_polygon(obj.polygon)
    if getattr(obj, "rbox", None) is not None:
        return rbox_to_polygon(*obj.rbox)
    return hbox_to_polygon(obj.hbox)
