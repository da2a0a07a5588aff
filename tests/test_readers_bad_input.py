"""Every kind of bad input: a counted skip (or note) naming file and line/element, an error with strict."""

import pytest
from PIL import Image

from samrs_hf.sources.readers import open_source
from samrs_hf.sources.records import (
    CORRUPT_IMAGE, DEGENERATE_BOX, DEGENERATE_WIDENED, EMPTY_ANNOTATION, GARBLED_ANNOTATION, MISSING_ANNOTATION,
    MISSING_IMAGE, NO_OBJECTS, NON_FINITE, OUT_OF_IMAGE, SIZE_MISMATCH, UNKNOWN_CLASS, SourceError,
)

GOOD = "10 10 50 10 50 40 10 40 plane 0"


def _dota(root, files: dict, images=None):
    """files: id -> label text (None = no label file); images: id -> size or bytes (default 200x100)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    images = images or {}
    for image_id, text in files.items():
        if text is not None:
            (root / "labelTxt" / f"{image_id}.txt").write_text(text)
        img = images.get(image_id, (200, 100))
        if isinstance(img, bytes):
            (root / "images" / f"{image_id}.png").write_bytes(img)
        elif img is not None:
            Image.new("RGB", img).save(root / "images" / f"{image_id}.png")
    return root


def _problems(src):
    return [(p.kind, p.where, p.skipped) for p in src.report.problems]


LINE_CASES = [
    ("1 2 3 4 plane 0", GARBLED_ANNOTATION, "expected 8 coordinates"),
    ("10 10 50 10 50 40 10 x plane 0", GARBLED_ANNOTATION, "non-numeric coordinate 'x'"),
    ("10 10 50 10 nan 40 10 40 plane 0", NON_FINITE, "non-finite"),
    ("10 10 50 10 inf 40 10 40 plane 0", NON_FINITE, "non-finite"),
    ("10 10 50 10 50 40 10 40 plane 7", GARBLED_ANNOTATION, "difficult flag"),
    ("10 10 50 10 50 40 10 40 spaceship 0", UNKNOWN_CLASS, "'spaceship'"),
    ("300 10 350 10 350 40 300 40 plane 0", OUT_OF_IMAGE, "outside the 200x100 image"),
    ("10 -90 50 -90 50 -60 10 -60 plane 0", OUT_OF_IMAGE, "outside"),
]


@pytest.mark.parametrize("line,kind,text", LINE_CASES)
def test_bad_line_is_skipped_with_file_and_line(tmp_path, line, kind, text):
    _dota(tmp_path, {"A": f"imagesource:x\n{GOOD}\n{line}\n{GOOD}\n"})
    src = open_source("dota", tmp_path)
    (img,) = list(src.images())
    assert len(img.objects) == 2
    (p,) = src.report.problems
    assert (p.kind, p.where, p.skipped) == (kind, "labelTxt/A.txt:3", True)
    assert text in p.message
    with pytest.raises(SourceError, match=r"labelTxt/A\.txt:3: " + kind):
        list(open_source("dota", tmp_path, strict=True).images())


def test_degenerate_box_widened_and_negative_extent(tmp_path):
    (tmp_path / "Annotations" / "Horizontal Bounding Boxes").mkdir(parents=True)
    (tmp_path / "JPEGImages-trainval").mkdir()
    Image.new("RGB", (800, 800)).save(tmp_path / "JPEGImages-trainval" / "00007.jpg")
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in [("bridge", 10, 20, 10, 60), ("bridge", 50, 20, 40, 60), ("dam", 1, 2, 3, 4)])
    (tmp_path / "Annotations" / "Horizontal Bounding Boxes" / "00007.xml").write_text(
        f"<annotation><size><width>800</width><height>600</height></size>{objs}</annotation>")
    src = open_source("dior", tmp_path)
    (img,) = list(src.images())
    # Zero width: widened to one pixel (the one documented rule), kept and noted.
    assert [o.hbox for o in img.objects] == [(10.0, 20.0, 11.0, 60.0), (1.0, 2.0, 3.0, 4.0)]
    x = "Annotations/Horizontal Bounding Boxes/00007.xml"
    assert _problems(src) == [(SIZE_MISMATCH, f"{x}:size", False), (DEGENERATE_WIDENED, f"{x}:object[1]", False),
                              (DEGENERATE_BOX, f"{x}:object[2]", True)]
    with pytest.raises(SourceError, match=r"00007\.xml:object\[2\]: degenerate-box"):
        list(open_source("dior", tmp_path, strict=True).images())


def test_missing_and_corrupt_images_and_annotations(tmp_path):
    _dota(tmp_path, {"A": GOOD, "B": GOOD, "C": None, "D": GOOD, "E": ""},
          images={"A": None, "B": b"\x89PNG\r\n\x1a\n not really", "C": (20, 20)})
    src = open_source("dota", tmp_path)
    assert [(i.image_id, len(i.objects)) for i in src.images()] == [("D", 1), ("E", 0)]
    assert _problems(src) == [
        (MISSING_IMAGE, "labelTxt/A.txt", True),
        (CORRUPT_IMAGE, "images/B.png", True),
        (MISSING_ANNOTATION, "images/C.png", True),
        (EMPTY_ANNOTATION, "labelTxt/E.txt", False),
    ]
    assert "not a readable image" in src.report.problems[1].message
    # Label-only: A and B are yielded (size unknown) and their image problems are notes.
    lo = open_source("dota", tmp_path, check_images=False)
    assert [(i.image_id, i.width) for i in lo.images()] == [("A", None), ("B", None), ("D", 200), ("E", 200)]
    assert [(k, s) for k, _, s in _problems(lo)] == [(MISSING_IMAGE, False), (CORRUPT_IMAGE, False),
                                                    (MISSING_ANNOTATION, True), (EMPTY_ANNOTATION, False)]
    with pytest.raises(SourceError, match=r"labelTxt/A\.txt: missing-image"):
        list(open_source("dota", tmp_path, strict=True).images())


def test_not_utf8_and_header_only_files(tmp_path):
    _dota(tmp_path, {"A": "gsd:0.5\nimagesource:GoogleEarth\n", "B": GOOD})
    (tmp_path / "labelTxt" / "B.txt").write_bytes(b"\xff\xfe garbage")
    src = open_source("dota", tmp_path)
    assert [i.image_id for i in src.images()] == ["A"]
    assert _problems(src) == [(NO_OBJECTS, "labelTxt/A.txt", False), (GARBLED_ANNOTATION, "labelTxt/B.txt", True)]


def _dior_xml(root, body, fmt="dior"):
    sub = "Horizontal Bounding Boxes" if fmt == "dior" else "Oriented Bounding Boxes"
    (root / "Annotations" / sub).mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages-trainval").mkdir(exist_ok=True)
    Image.new("RGB", (800, 800)).save(root / "JPEGImages-trainval" / "00009.jpg")
    (root / "Annotations" / sub / "00009.xml").write_text(body)
    return f"Annotations/{sub}/00009.xml"


def test_garbled_xml_names_line(tmp_path):
    rel = _dior_xml(tmp_path, "<annotation>\n<object><name>ship</name>\n</annotation>")
    src = open_source("dior", tmp_path)
    assert list(src.images()) == []
    (p,) = src.report.problems
    assert p.kind == GARBLED_ANNOTATION and p.where == f"{rel}:3"


def test_xml_object_problems_name_the_element(tmp_path):
    rel = _dior_xml(tmp_path, (
        "<annotation><object><name>ship</name><robndbox><x_left_top>1</x_left_top></robndbox></object>"
        "<object><name>Ship</name><robndbox>" + "".join(
            f"<{t}>{v}</{t}>" for t, v in zip(
                ("x_left_top", "y_left_top", "x_right_top", "y_right_top", "x_right_bottom", "y_right_bottom",
                 "x_left_bottom", "y_left_bottom"), (1, 1, 9, 1, 9, "NaN", 1, 9))) + "</robndbox></object>"
        "<object><name></name></object><object><name>ufo</name><robndbox/></object></annotation>"), "dior-r")
    src = open_source("dior-r", tmp_path)
    (img,) = list(src.images())
    assert img.objects == []
    assert _problems(src) == [(GARBLED_ANNOTATION, f"{rel}:object[1]", True),
                              (NON_FINITE, f"{rel}:object[2]/y_right_bottom", True),
                              (GARBLED_ANNOTATION, f"{rel}:object[3]", True),
                              (GARBLED_ANNOTATION, f"{rel}:object[4]", True)]


def test_fair1m_point_problems(tmp_path):
    (tmp_path / "labelXml").mkdir()
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 100)).save(tmp_path / "images" / "5.tif")

    def obj(name, pts):
        return (f"<object><possibleresult><name>{name}</name></possibleresult><points>"
                + "".join(f"<point>{p}</point>" for p in pts) + "</points></object>")

    square = ["1,1", "9,1", "9,9", "1,9"]
    (tmp_path / "labelXml" / "5.xml").write_text(
        "<annotation><objects>" + obj("Van", square + ["1,1"]) + obj("Van", square)
        + obj("Van", square + ["2,2"]) + obj("Van", ["1,1", "2,2", "1,1"]) + obj("Van", ["1;1"] + square)
        + obj("Tank", square) + obj("small car", ["5,5", "5,5", "5,5", "5,5", "5,5"]) + "</objects></annotation>")
    src = open_source("fair1m", tmp_path)
    (img,) = list(src.images())
    assert img.image_id == "5" and img.split is None
    # Closed (5th = 1st) and open 4-point polygons are read; a zero-area one is widened to 1 px.
    assert [(o.category, o.hbox) for o in img.objects] == [
        ("Van", (1.0, 1.0, 9.0, 9.0)), ("Van", (1.0, 1.0, 9.0, 9.0)), ("Small-Car", (5.0, 5.0, 6.0, 6.0))]
    w = "labelXml/5.xml:object"
    assert _problems(src) == [(GARBLED_ANNOTATION, f"{w}[3]", True), (GARBLED_ANNOTATION, f"{w}[4]", True),
                              (GARBLED_ANNOTATION, f"{w}[5]/point[1]", True), (UNKNOWN_CLASS, f"{w}[6]", True),
                              (DEGENERATE_WIDENED, f"{w}[7]", False)]


def test_fair1m_bad_point_is_one_skip(tmp_path):
    """A point with two bad numbers drops one object: one skip, so build.json counts one object."""
    (tmp_path / "labelXml").mkdir()
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 100)).save(tmp_path / "images" / "5.tif")
    (tmp_path / "labelXml" / "5.xml").write_text(
        "<annotation><objects><object><possibleresult><name>Van</name></possibleresult><points>"
        + "".join(f"<point>{p}</point>" for p in ["abc,nan", "9,1", "9,9", "1,9", "abc,nan"])
        + "</points></object></objects></annotation>")
    src = open_source("fair1m", tmp_path)
    (img,) = list(src.images())
    assert img.objects == []
    assert _problems(src) == [(GARBLED_ANNOTATION, "labelXml/5.xml:object[1]/point[1]", True)]


def test_hrsc_bad_fields(tmp_path):
    full = tmp_path / "FullDataSet"
    (full / "Annotations").mkdir(parents=True)
    (full / "AllImages").mkdir()
    Image.new("RGB", (100, 80)).save(full / "AllImages" / "1.bmp")
    ship = ("<HRSC_Object><box_xmin>1</box_xmin><box_ymin>1</box_ymin><box_xmax>9</box_xmax><box_ymax>9</box_ymax>"
            "<mbox_cx>5</mbox_cx><mbox_cy>5</mbox_cy><mbox_w>8</mbox_w><mbox_h>4</mbox_h><mbox_ang>{ang}</mbox_ang>"
            "<seg_color>{col}</seg_color></HRSC_Object>")
    (full / "Annotations" / "1.xml").write_text(
        "<HRSC_Image><Img_SizeWidth>100</Img_SizeWidth><Img_SizeHeight>80</Img_SizeHeight><HRSC_Objects>"
        + ship.format(ang="0.5", col="1,2") + ship.format(ang="x", col="") + "</HRSC_Objects></HRSC_Image>")
    (full / "Annotations" / "2.xml").write_text("<HRSC_Image><HRSC_Objects/></HRSC_Image>")
    src = open_source("hrsc2016", tmp_path, check_images=False)
    one, two = list(src.images())
    assert len(one.objects) == 1 and one.objects[0].extra["seg_color"] is None and two.objects == []
    a = "FullDataSet/Annotations"
    assert _problems(src) == [
        (GARBLED_ANNOTATION, f"{a}/1.xml:HRSC_Object[1]/seg_color", False),
        (GARBLED_ANNOTATION, f"{a}/1.xml:HRSC_Object[2]/mbox_ang", True),
        (MISSING_IMAGE, f"{a}/2.xml", False), (NO_OBJECTS, f"{a}/2.xml", False)]


def test_bad_layout_errors(tmp_path):
    with pytest.raises(SourceError, match="no such source folder"):
        open_source("dota", tmp_path / "nope")
    with pytest.raises(ValueError, match="unknown source format"):
        open_source("voc", tmp_path)
    for fmt, text in [("dota", "no DOTA layout"), ("dior", "no DIOR annotations"), ("fair1m", "no FAIR1M layout"),
                      ("hrsc2016", "no HRSC2016 layout"), ("coco", "no COCO JSON")]:
        with pytest.raises(SourceError, match=text):
            list(open_source(fmt, tmp_path).images())
