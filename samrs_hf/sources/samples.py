"""Tiny, valid sources in each official layout, written deterministically (no download needed).

Demos, the quick start and tests read these instead of the real datasets. Every object is drawn
as a filled shape of a distinct colour (a rotated rectangle, or an ellipse for round classes) on a
smooth textured background, exactly where its box is, so that SAM has something to segment.
The same call always writes the same bytes. Each ``write_*_sample(root)`` creates ``root`` if
needed and returns the path to pass to :func:`samrs_hf.sources.readers.open_source`.

===========  ==========================================================================  ========
format       contents                                                                    objects
===========  ==========================================================================  ========
dota         ``train/``: P0001.png 1400x1000 RGB (header lines, CRLF; 2 windows of 1024),       12
             P0002.png 700x600 grayscale (smaller than a window); ``val/``: P0003.png
             1100x900 palette. Counts: plane 3, ship 2, storage-tank 2, small-vehicle 2,
             harbor 1, tennis-court 1, swimming-pool 1
dior         ``JPEGImages-trainval/`` 00001, 00002 and ``JPEGImages-test/`` 11726 (800x800 jpg)   8
(dior-r)     with horizontal and oriented XMLs, ImageSets/Main. airplane 2, vehicle 2,
             expressway-toll-station 1 (written capitalised, as DIOR does), ship 1,
             storagetank 1, windmill 1
fair1m       ``train/part1/`` 0.tif and 1.tif, ``validation/`` 0.tif (900x700, name clash ->          9
             ids train_0, train_1, valid_0). Dry-Cargo-Ship 2, Small-Car 3, Boeing737 2,
             Tennis-Court 1, Bridge 1
hrsc2016     ``FullDataSet/`` 100000001.bmp (trainval, no seg colours) and 100000002.bmp            4
             (test, every ship has a seg_color and ``Segmentations/100000002.png``),
             640x480; ImageSets trainval/test. ship 4
coco         ``annotations/instances_train.json`` + ``train/`` a.jpg (640x480), b.jpg                5
             (512x512); category ids 1 car, 3 building, 7 tree. car 2, building 2, tree 1
===========  ==========================================================================  ========
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .geometry import polygon_to_hbox, rbox_to_polygon

COLORS = (
    (220, 40, 40), (40, 200, 60), (40, 80, 230), (240, 200, 30), (200, 60, 220), (30, 210, 210),
    (250, 130, 20), (140, 90, 40), (250, 250, 250), (20, 20, 20), (120, 200, 120), (180, 180, 60),
)
ROUND_CLASSES = {"storage-tank", "storagetank", "roundabout", "tree"}


def _background(width: int, height: int, seed: int) -> Image.Image:
    """Smooth coloured texture (blocky noise, bilinearly enlarged) plus fine grain."""
    rng = np.random.RandomState(seed)
    coarse = rng.randint(70, 140, size=(height // 40 + 2, width // 40 + 2, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR), dtype=np.int16)
    grain = rng.randint(-4, 5, size=(height, width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB")


def _rect(cx, cy, w, h, deg=0.0) -> np.ndarray:
    """Corners (rounded to 0.1 px) of a w x h rectangle rotated ``deg`` degrees clockwise on screen."""
    return np.round(rbox_to_polygon(cx, cy, w, h, math.radians(deg)), 1)


def _draw(image: Image.Image, shapes) -> Image.Image:
    """Paint ``(category, polygon)`` shapes, each in the next colour of :data:`COLORS`."""
    draw = ImageDraw.Draw(image)
    for k, (category, polygon) in enumerate(shapes):
        color = COLORS[k % len(COLORS)]
        if category in ROUND_CLASSES:
            draw.ellipse(polygon_to_hbox(polygon), fill=color)
        else:
            draw.polygon([tuple(p) for p in polygon.tolist()], fill=color)
    return image


def _scene(width, height, seed, shapes, mode="RGB") -> Image.Image:
    image = _draw(_background(width, height, seed), shapes)
    if mode == "L":
        return image.convert("L")
    if mode == "P":
        return image.quantize(colors=64, method=Image.Quantize.FASTOCTREE)
    return image


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.1f}"


# --------------------------------------------------------------------------------------------- DOTA
DOTA_IMAGES = {
    # split, id, (w, h), mode, header+CRLF, [(category, polygon, difficult)]
    "P0001": ("train", (1400, 1000), "RGB", True, [
        ("plane", _rect(300, 250, 160, 120, 30), 0),
        ("ship", _rect(760, 180, 120, 60), 0),
        ("storage-tank", _rect(1050, 650, 100, 100), 0),
        ("small-vehicle", _rect(1270, 860, 40, 20, -15), 1),
        ("harbor", _rect(250, 800, 300, 200), 0),
        ("tennis-court", _rect(1150, 300, 110, 60, 60), 0),
        ("plane", _rect(600, 600, 150, 150, -40), 0),
    ]),
    "P0002": ("train", (700, 600), "L", False, [
        ("swimming-pool", _rect(200, 150, 90, 50, 10), 0),
        ("small-vehicle", _rect(500, 420, 30, 16), 0),
    ]),
    "P0003": ("val", (1100, 900), "P", False, [
        ("plane", _rect(300, 300, 140, 120, 15), 0),
        ("ship", _rect(800, 500, 200, 50, -25), 0),
        ("storage-tank", _rect(500, 750, 80, 80), 0),
    ]),
}


def write_dota_sample(root) -> Path:
    """DOTA layout ``train/`` + ``val/`` with ``images/*.png`` and ``labelTxt/*.txt`` (12 objects)."""
    root = Path(root)
    for seed, (image_id, (split, (w, h), mode, header, objects)) in enumerate(DOTA_IMAGES.items()):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labelTxt").mkdir(parents=True, exist_ok=True)
        _scene(w, h, seed, [(c, p) for c, p, _ in objects], mode).save(
            root / split / "images" / f"{image_id}.png", compress_level=1)
        lines = ["imagesource:GoogleEarth", "gsd:0.146343590398"] if header else []
        lines += [" ".join(_num(v) for v in p.ravel()) + f" {c} {d}" for c, p, d in objects]
        eol = "\r\n" if header else "\n"
        (root / split / "labelTxt" / f"{image_id}.txt").write_bytes((eol.join(lines) + eol).encode())
    return root


# --------------------------------------------------------------------------------------------- DIOR
DIOR_IMAGES = {
    "00001": ("trainval", "train", [
        ("airplane", 200, 200, 120, 100, 20.0),
        ("vehicle", 600, 150, 30, 16, 0.0),
        ("Expressway-toll-station", 450, 550, 180, 90, 0.0),
    ]),
    "00002": ("trainval", "val", [
        ("ship", 300, 400, 200, 50, -30.0),
        ("storagetank", 620, 620, 90, 90, 0.0),
    ]),
    "11726": ("test", "test", [
        ("airplane", 400, 300, 130, 110, 5.0),
        ("vehicle", 100, 700, 24, 14, 0.0),
        ("windmill", 650, 200, 60, 60, 0.0),
    ]),
}

_VOC_OBJECT = """    <object>
        <name>{name}</name>
        <pose>Unspecified</pose>
        <truncated>0</truncated>
        <difficult>0</difficult>
{box}
    </object>
"""


def _voc(filename: str, width: int, height: int, objects: str) -> str:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<annotation>\n    <filename>{filename}</filename>\n'
            f"    <source>\n        <database>DIOR</database>\n    </source>\n    <size>\n"
            f"        <width>{width}</width>\n        <height>{height}</height>\n        <depth>3</depth>\n"
            f"    </size>\n    <segmented>0</segmented>\n{objects}</annotation>\n")


def write_dior_sample(root) -> Path:
    """DIOR layout with both annotation folders, read as ``dior`` or ``dior-r`` (8 objects)."""
    root = Path(root)
    hdir, odir = root / "Annotations" / "Horizontal Bounding Boxes", root / "Annotations" / "Oriented Bounding Boxes"
    sets = root / "ImageSets" / "Main"
    for d in (hdir, odir, sets, root / "JPEGImages-trainval", root / "JPEGImages-test"):
        d.mkdir(parents=True, exist_ok=True)
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for seed, (image_id, (split, listed, objects)) in enumerate(DIOR_IMAGES.items(), start=10):
        polys = [(name, np.round(_rect(cx, cy, w, h, deg))) for name, cx, cy, w, h, deg in objects]
        _scene(800, 800, seed, [(n.lower(), p) for n, p in polys]).save(
            root / f"JPEGImages-{split}" / f"{image_id}.jpg", quality=92)
        hbb, obb = "", ""
        for (name, poly), obj in zip(polys, objects):
            x0, y0, x1, y1 = (int(v) for v in polygon_to_hbox(poly))
            hbb += _VOC_OBJECT.format(name=name, box=(
                f"        <bndbox>\n            <xmin>{x0}</xmin>\n            <ymin>{y0}</ymin>\n"
                f"            <xmax>{x1}</xmax>\n            <ymax>{y1}</ymax>\n        </bndbox>"))
            tags = ("left_top", "right_top", "right_bottom", "left_bottom")
            corners = "".join(f"            <x_{t}>{int(x)}</x_{t}>\n            <y_{t}>{int(y)}</y_{t}>\n"
                              for t, (x, y) in zip(tags, poly.tolist()))
            obb += _VOC_OBJECT.format(name=name, box=(
                f"        <type>robndbox</type>\n        <robndbox>\n{corners}        </robndbox>\n"
                f"        <angle>{obj[5]:g}</angle>"))
        (hdir / f"{image_id}.xml").write_text(_voc(f"{image_id}.jpg", 800, 800, hbb))
        (odir / f"{image_id}.xml").write_text(_voc(f"{image_id}.jpg", 800, 800, obb))
        lists[listed].append(image_id)
    for name, ids in lists.items():
        (sets / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


# ------------------------------------------------------------------------------------------- FAIR1M
FAIR1M_IMAGES = {
    # (split folder, file stem): objects (name, polygon, start corner, clockwise)
    ("train/part1", "0"): [
        ("Dry Cargo Ship", _rect(200, 150, 220, 60, 20), 0, True),
        ("Small Car", _rect(700, 120, 30, 16, 0), 2, False),
        ("Small Car", _rect(740, 160, 30, 16, 10), 1, True),
        ("Bridge", _rect(450, 500, 300, 40, -10), 3, False),
    ],
    ("train/part1", "1"): [
        ("Boeing737", _rect(300, 300, 120, 110, 45), 0, True),
        ("Tennis Court", _rect(650, 450, 120, 60, 0), 0, False),
    ],
    ("validation", "0"): [
        ("Boeing737", _rect(450, 350, 130, 120, -30), 1, True),
        ("Dry Cargo Ship", _rect(750, 600, 200, 50, 0), 0, True),
        ("Small Car", _rect(100, 80, 28, 14, 30), 0, True),
    ],
}

_FAIR1M_OBJECT = """        <object>
            <coordinate>pixel</coordinate>
            <type>rectangle</type>
            <description>None</description>
            <possibleresult>
                <name>{name}</name>
            </possibleresult>
            <points>
{points}            </points>
        </object>
"""


def write_fair1m_sample(root) -> Path:
    """FAIR1M layout ``train/part1`` + ``validation`` with 900x700 ``.tif`` images (9 objects)."""
    root = Path(root)
    for seed, ((folder, stem), objects) in enumerate(FAIR1M_IMAGES.items(), start=20):
        (root / folder / "images").mkdir(parents=True, exist_ok=True)
        (root / folder / "labelXml").mkdir(parents=True, exist_ok=True)
        _scene(900, 700, seed, [(n, p) for n, p, _, _ in objects]).save(
            root / folder / "images" / f"{stem}.tif", compression="tiff_lzw")
        body = ""
        for name, poly, start, clockwise in objects:
            order = np.roll(poly if clockwise else poly[::-1], -start, axis=0)
            pts = list(order) + [order[0]]  # FAIR1M repeats the first point
            points = "".join(f"                <point>{x:.6f},{y:.6f}</point>\n" for x, y in pts)
            body += _FAIR1M_OBJECT.format(name=name, points=points)
        (root / folder / "labelXml" / f"{stem}.xml").write_text(
            '<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n    <source>\n'
            f"        <filename>{stem}.tif</filename>\n        <origin>GF2/GF3</origin>\n    </source>\n"
            "    <size>\n        <width>900</width>\n        <height>700</height>\n        <depth>3</depth>\n"
            f"    </size>\n    <objects>\n{body}    </objects>\n</annotation>\n")
    return root


# ----------------------------------------------------------------------------------------- HRSC2016
HRSC_IMAGES = {
    # id: split, [(cx, cy, w, h, angle radians, seg_color or None)]
    "100000001": ("trainval", [(200.0, 150.0, 220.0, 50.0, 0.3, None), (450.0, 350.0, 160.0, 40.0, -1.1, None)]),
    "100000002": ("test", [(320.0, 240.0, 300.0, 60.0, -0.5, (255, 0, 0)), (150.0, 400.0, 120.0, 30.0, 0.0, (0, 255, 0))]),
}


def write_hrsc2016_sample(root) -> Path:
    """HRSC2016 layout with ``.bmp`` images, R-Box XMLs, a segmentation PNG and ImageSets (4 ships)."""
    root = Path(root)
    full = root / "FullDataSet"
    for d in ("AllImages", "Annotations", "Segmentations", "LandMask"):
        (full / d).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"trainval": [], "test": []}
    for seed, (image_id, (split, ships)) in enumerate(HRSC_IMAGES.items(), start=30):
        polys = [rbox_to_polygon(cx, cy, w, h, a) for cx, cy, w, h, a, _ in ships]
        _scene(640, 480, seed, [("ship", p) for p in polys]).save(full / "AllImages" / f"{image_id}.bmp")
        if any(s[5] for s in ships):
            seg = Image.new("RGB", (640, 480))
            draw = ImageDraw.Draw(seg)
            for poly, ship in zip(polys, ships):
                if ship[5]:
                    draw.polygon([tuple(p) for p in poly.tolist()], fill=ship[5])
            seg.save(full / "Segmentations" / f"{image_id}.png", compress_level=1)
        objs = ""
        for k, ((cx, cy, w, h, a, color), poly) in enumerate(zip(ships, polys)):
            x0, y0, x1, y1 = polygon_to_hbox(poly)
            bow = (cx + w / 2 * math.cos(a), cy + w / 2 * math.sin(a))
            seg_text = ",".join(str(c) for c in color) if color else "\n      "
            objs += (
                f"    <HRSC_Object>\n      <Object_ID>{image_id[:-1]}{k}</Object_ID>\n"
                f"      <Class_ID>100000001</Class_ID>\n      <truncated>0</truncated>\n"
                f"      <difficult>0</difficult>\n"
                f"      <box_xmin>{math.floor(x0)}</box_xmin>\n      <box_ymin>{math.floor(y0)}</box_ymin>\n"
                f"      <box_xmax>{math.ceil(x1)}</box_xmax>\n      <box_ymax>{math.ceil(y1)}</box_ymax>\n"
                f"      <mbox_cx>{cx:.4f}</mbox_cx>\n      <mbox_cy>{cy:.4f}</mbox_cy>\n"
                f"      <mbox_w>{w:.4f}</mbox_w>\n      <mbox_h>{h:.4f}</mbox_h>\n"
                f"      <mbox_ang>{a:.6f}</mbox_ang>\n      <segmented>{int(bool(color))}</segmented>\n"
                f"      <seg_color>{seg_text}</seg_color>\n"
                f"      <header_x>{round(bow[0])}</header_x>\n      <header_y>{round(bow[1])}</header_y>\n"
                f"    </HRSC_Object>\n")
        (full / "Annotations" / f"{image_id}.xml").write_text(
            f"<HRSC_Image>\n  <Img_ID>{image_id}</Img_ID>\n  <Img_FileName>{image_id}</Img_FileName>\n"
            "  <Img_FileFmt>bmp</Img_FileFmt>\n  <Img_SizeWidth>640</Img_SizeWidth>\n"
            "  <Img_SizeHeight>480</Img_SizeHeight>\n  <Img_SizeDepth>3</Img_SizeDepth>\n"
            f"  <HRSC_Objects>\n{objs}  </HRSC_Objects>\n</HRSC_Image>\n")
        splits[split].append(image_id)
    for name, ids in splits.items():
        (root / "ImageSets" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


# --------------------------------------------------------------------------------------------- COCO
COCO_CATEGORIES = ((1, "car"), (3, "building"), (7, "tree"))
COCO_IMAGES = {
    "a.jpg": ((640, 480), [(1, 100, 100, 60, 30), (3, 300, 200, 150, 120), (7, 520, 380, 70, 70)]),
    "b.jpg": ((512, 512), [(1, 50, 400, 40, 20), (3, 200, 100, 200, 180)]),
}


def write_coco_sample(root) -> Path:
    """COCO layout ``annotations/instances_train.json`` + ``train/*.jpg`` (5 boxes); returns ``root``."""
    root = Path(root)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "train").mkdir(parents=True, exist_ok=True)
    names = dict(COCO_CATEGORIES)
    images, annotations = [], []
    for seed, (file_name, ((w, h), boxes)) in enumerate(COCO_IMAGES.items(), start=40):
        image_id = seed - 39
        shapes = []
        for cat, x, y, bw, bh in boxes:
            poly = np.array([[x, y], [x + bw, y], [x + bw, y + bh], [x, y + bh]], dtype=np.float64)
            shapes.append((names[cat], poly))
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0,
                "segmentation": [poly.ravel().tolist()],
            })
        _scene(w, h, seed, shapes).save(root / "train" / file_name, quality=92)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "object"} for i, n in COCO_CATEGORIES]}
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco, indent=1))
    return root


WRITERS = {
    "dota": write_dota_sample,
    "dior": write_dior_sample,
    "dior-r": write_dior_sample,
    "fair1m": write_fair1m_sample,
    "hrsc2016": write_hrsc2016_sample,
    "coco": write_coco_sample,
}


def write_sample(fmt: str, root) -> Path:
    """Write the sample source of ``fmt`` (one of :data:`samrs_hf.sources.readers.FORMATS`) into ``root``."""
    try:
        return WRITERS[fmt](root)
    except KeyError:
        raise ValueError(f"no sample for format {fmt!r}; known: {', '.join(WRITERS)}") from None


def main(argv=None) -> int:
    """``python -m samrs_hf.sources.samples FORMAT OUT_DIR``: write a sample source and print its path."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m samrs_hf.sources.samples", description=main.__doc__)
    parser.add_argument("format", choices=sorted(WRITERS))
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    print(write_sample(args.format, args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
