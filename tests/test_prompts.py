"""SAM prompts of Sec. 2.3 / Table 1 on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from samrs_hf.sam.prompts import (
    BASIC_PROMPTS,
    TABLE1_PROMPTS,
    PromptBatch,
    PromptNameError,
    canonical_prompt_name,
    fill_poly_cv2,
    make_prompts,
    parse_prompt,
    preprocess_shape,
)
from samrs_hf.sources.records import SourceObject

IN, OUT = 1000.0, -1000.0


def hbox_only():
    return SourceObject("plane", 0, (100.0, 50.0, 300.0, 150.0))


def diamond():
    poly = np.array([(400, 100), (500, 200), (400, 300), (300, 200)], dtype=np.float64)
    return SourceObject("ship", 0, (300.0, 100.0, 500.0, 300.0), polygon=poly)


def rbox_only():
    # HRSC-style R-Box: 100 long along (cos 90°, sin 90°) = straight down, 40 wide; its source
    # H-Box is deliberately looser than the R-Box
    return SourceObject("ship", 0, (570.0, 340.0, 630.0, 460.0), rbox=(600.0, 400.0, 100.0, 40.0, np.pi / 2))


# ---------------------------------------------------------------- names


def test_table1_has_fifteen_rows_in_paper_order():
    assert TABLE1_PROMPTS == (
        "CP",
        "H-Box",
        "H-Box-M",
        "CP+H-Box",
        "H-Box+H-Box-M",
        "CP+H-Box-M",
        "CP+H-Box+H-Box-M",
        "R-Box-M",
        "CP+R-Box-M",
        "RH-Box",
        "RH-Box-M",
        "CP+RH-Box",
        "RH-Box+RH-Box-M",
        "CP+RH-Box-M",
        "CP+RH-Box+RH-Box-M",
    )
    assert len(set(TABLE1_PROMPTS)) == 15
    assert BASIC_PROMPTS == ("CP", "H-Box", "RH-Box", "H-Box-M", "R-Box-M", "RH-Box-M")


@pytest.mark.parametrize(
    "name, parts",
    [
        ("H-Box+CP", ("CP", "H-Box")),
        ("RH-Box-M+RH-Box", ("RH-Box", "RH-Box-M")),
        ("h-box-m + cp + H-BOX", ("CP", "H-Box", "H-Box-M")),
        ("rboxm", ("R-Box-M",)),
        ("RH_Box", ("RH-Box",)),
        ("RH-Box+H-Box-M", ("RH-Box", "H-Box-M")),  # not a Table 1 row, but a valid combination
    ],
)
def test_names_any_order_any_case(name, parts):
    assert parse_prompt(name) == parts
    assert canonical_prompt_name(name) == "+".join(parts)


def test_table1_names_are_canonical():
    for name in TABLE1_PROMPTS:
        assert canonical_prompt_name(name) == name
        assert canonical_prompt_name("+".join(reversed(name.split("+")))) == name


@pytest.mark.parametrize(
    "name, why",
    [
        ("", "empty"),
        ("R-Box", "no rotated-box prompt"),
        ("H-Box+RH-Box", "more than one box"),
        ("H-Box-M+R-Box-M", "more than one mask"),
        ("CP+cp", "twice"),
        ("H-Box+point", "unknown component 'point'"),
        ("H-Box++CP", "unknown component ''"),
    ],
)
def test_bad_names_error_lists_valid_names(name, why):
    with pytest.raises(PromptNameError, match=why) as exc:
        parse_prompt(name)
    msg = str(exc.value)
    assert "CP+RH-Box+RH-Box-M" in msg and "R-Box-M" in msg  # the valid names are listed
    assert isinstance(exc.value, ValueError)


# ---------------------------------------------------------------- points and boxes


def test_cp_hbox_rhbox_values():
    objs = [hbox_only(), diamond(), rbox_only()]
    pb = make_prompts("CP+H-Box", objs, (600, 800))
    assert pb.box_kind == "H-Box" and pb.name == "CP+H-Box" and len(pb) == 3
    assert pb.boxes.dtype == np.float64 and pb.points.dtype == np.float32 and pb.point_labels.dtype == np.int64
    np.testing.assert_array_equal(pb.boxes, [[100, 50, 300, 150], [300, 100, 500, 300], [570, 340, 630, 460]])
    # centres: H-Box centre / polygon corner mean / R-Box centre
    np.testing.assert_allclose(pb.points, [[[200, 100]], [[400, 200]], [[600, 400]]])
    np.testing.assert_array_equal(pb.point_labels, [[1], [1], [1]])
    assert pb.masks is None

    rh = make_prompts("RH-Box", objs, (600, 800))
    assert rh.box_kind == "RH-Box" and rh.points is None and rh.point_labels is None
    # no polygon: the H-Box; diamond: corner min/max; R-Box: its corners (40 wide, 100 tall)
    np.testing.assert_allclose(rh.boxes, [[100, 50, 300, 150], [300, 100, 500, 300], [580, 350, 620, 450]], atol=1e-4)


def test_cp_prefers_rbox_centre_over_polygon_mean():
    # HRSC records carry both; SAMRS used mbox_cx/mbox_cy
    obj = SourceObject(
        "ship", 0, (0.0, 0.0, 10.0, 10.0), polygon=np.array([(0, 0), (10, 0), (10, 10), (0, 10)]), rbox=(4, 6, 10, 10, 0)
    )
    assert make_prompts("CP", [obj], (20, 20)).points.tolist() == [[[4.0, 6.0]]]


def test_no_objects_gives_empty_arrays():
    pb = make_prompts("CP+RH-Box+RH-Box-M", [], (100, 200))
    assert len(pb) == 0
    assert pb.boxes.shape == (0, 4) and pb.points.shape == (0, 1, 2) and pb.point_labels.shape == (0, 1)
    assert pb.masks.shape == (0, 1, 256, 256)
    assert make_prompts("R-Box-M", [], (100, 200)).masks.shape == (0, 1, 256, 256)


# ---------------------------------------------------------------- masks


def test_preprocess_shape_like_resize_longest_side():
    assert preprocess_shape(512, 1024) == (512, 1024)
    assert preprocess_shape(300, 200) == (1024, 683)  # 200 * 1024/300 = 682.67 -> 683
    assert preprocess_shape(800, 800) == (1024, 1024)


def test_box_mask_cells_and_padding_1024x512():
    # scale 1: the 256 grid samples pixel rows/cols 4r+1 and 4r+2 (bilinear 1024 -> 256)
    obj = SourceObject("plane", 0, (100.0, 40.0, 297.9, 199.0))  # int(): cols 100..297, rows 40..199
    m = make_prompts("H-Box-M", [obj], (512, 1024)).masks
    assert m.shape == (1, 1, 256, 256) and m.dtype == np.float32
    m = m[0, 0]
    assert m[20, 30] == IN  # rows 81-82, cols 121-122
    assert m[9, 30] == OUT  # rows 37-38: above the box
    assert m[20, 24] == OUT  # cols 97-98: left of the box
    assert m[20, 25] == IN  # cols 101-102
    assert abs(m[20, 74]) < 1e-3  # cols 297 (in) and 298 (out): half-way
    assert m[49, 30] == IN and m[50, 30] == OUT  # rows 197-198 in, 201-202 out
    assert (m[128:] == OUT).all()  # rows >= 512 of the 1024 frame are padding
    assert set(np.unique(m)) <= {IN, OUT, m[20, 74]}


def test_padding_of_tall_image_is_outside():
    # 300x200 image -> 1024x683 frame; a box over the whole image fills columns < 683
    obj = SourceObject("plane", 0, (0.0, 0.0, 199.0, 299.0))
    m = make_prompts("H-Box-M", [obj], (300, 200)).masks[0, 0]
    np.testing.assert_allclose(m[:, :171], IN, atol=1e-3)  # cols 4c+1, 4c+2 <= 682
    assert (m[:, 171:] == OUT).all()


def test_rbox_mask_differs_from_its_rhbox_mask():
    d = SourceObject(
        "ship", 0, (212.0, 212.0, 812.0, 812.0), polygon=np.array([(512, 212), (812, 512), (512, 812), (212, 512)])
    )
    r = make_prompts("R-Box-M", [d], (1024, 1024)).masks[0, 0]
    rh = make_prompts("RH-Box-M", [d], (1024, 1024)).masks[0, 0]
    assert r[128, 128] == IN and rh[128, 128] == IN  # centre
    assert r[60, 60] == OUT and rh[60, 60] == IN  # inside the RH-Box corner, outside the diamond
    assert r[10, 10] == OUT and rh[10, 10] == OUT
    assert (r <= rh).all()


# Pixels recorded from cv2.fillPoly(np.zeros((h, w), np.uint8), [np.int32(pts)], 1), OpenCV 5.0.
CV2_FILLPOLY = [
    (
        [(5, 1), (9, 5), (5, 9), (1, 5)],
        [
            "...........",
            ".....#.....",
            "....###....",
            "...#####...",
            "..#######..",
            ".#########.",
            "..#######..",
            "...#####...",
            "....###....",
            ".....#.....",
            "...........",
        ],
    ),
    (
        [(1, 1), (10, 3), (9, 5), (0, 3)],
        [
            "............",
            ".###........",
            "########....",
            "###########.",
            "...#######..",
            ".......###..",
            "............",
        ],
    ),
    (  # crosses the top and left image border
        [(-3, 2), (6, -2), (9, 7), (1, 9)],
        [
            "..#####...",
            "#######...",
            "########..",
            "########..",
            "#########.",
            "#########.",
            "##########",
            "##########",
        ],
    ),
]


@pytest.mark.parametrize("pts, expected", CV2_FILLPOLY)
def test_polygon_rasterisation_matches_cv2_fillpoly(pts, expected):
    canvas = np.zeros((len(expected), len(expected[0])), np.uint8)
    got = fill_poly_cv2(canvas, pts)
    assert ["".join("#" if v else "." for v in row) for row in got] == expected


def test_axis_aligned_polygon_mask_equals_box_mask():
    poly = np.array([(10.3, 20.0), (50.7, 20.0), (50.7, 60.2), (10.3, 60.2)])
    obj = SourceObject("ship", 0, (10.3, 20.0, 50.7, 60.2), polygon=poly)
    a = make_prompts("R-Box-M", [obj], (300, 500)).masks
    b = make_prompts("H-Box-M", [obj], (300, 500)).masks
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_rbox_mask_of_object_crossing_the_border():
    # square of side 100 rotated 45°, centred on the left edge: only its right half is inside
    obj = SourceObject("ship", 0, (-71.0, 29.0, 71.0, 171.0), rbox=(0.0, 100.0, 100.0, 100.0, np.pi / 4))
    m = make_prompts("R-Box-M", [obj], (1024, 1024)).masks[0, 0]
    assert m[25, 5] == IN  # pixels (101-102, 21-22): inside the diamond
    assert m[25, 20] == OUT  # x = 81: right of its tip at x = 70.7
    assert m[5, 5] == OUT


def test_box_outside_image_gives_all_outside_mask():
    obj = SourceObject("plane", 0, (-50.0, -50.0, -10.0, -10.0))
    assert (make_prompts("H-Box-M", [obj], (100, 100)).masks == OUT).all()


# ---------------------------------------------------------------- all Table 1 rows


@pytest.mark.parametrize("name", TABLE1_PROMPTS)
def test_every_table1_row_builds(name):
    objs = [hbox_only(), diamond(), rbox_only()]
    pb = make_prompts(name, objs, (600, 800))
    parts = name.split("+")
    assert isinstance(pb, PromptBatch) and len(pb) == 3 and pb.name == name
    assert (pb.points is not None) == ("CP" in parts)
    assert (pb.point_labels is not None) == ("CP" in parts)
    box = next((p for p in parts if p in ("H-Box", "RH-Box")), None)
    assert pb.box_kind == box and (pb.boxes is not None) == (box is not None)
    has_mask = any(p.endswith("-M") for p in parts)
    assert (pb.masks is not None) == has_mask
    if has_mask:
        assert pb.masks.shape == (3, 1, 256, 256)
        assert pb.masks.max() == IN and pb.masks.min() == OUT


def test_batch_slicing_for_chunks():
    pb = make_prompts("CP+H-Box+H-Box-M", [hbox_only(), diamond(), rbox_only()], (600, 800))
    part = pb[1:]
    assert len(part) == 2 and part.box_kind == "H-Box"
    np.testing.assert_array_equal(part.boxes, pb.boxes[1:])
    np.testing.assert_array_equal(part.masks, pb.masks[1:])
    assert len(pb[np.array([0, 2])]) == 2 and len(pb[-1]) == 1
    np.testing.assert_array_equal(pb[-1].points, pb.points[2:])


def test_bad_image_size():
    with pytest.raises(ValueError, match="positive"):
        make_prompts("H-Box", [hbox_only()], (0, 10))


def test_masks_equal_the_reference_pipeline_in_torch():
    # SAMRS: +-1000 map at image size -> bilinear to the long-side-1024 frame -> pad -1000 ->
    # bilinear to 256 (cv2.INTER_LINEAR == F.interpolate(bilinear, align_corners=False)).
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    h, w = 300, 200
    poly = np.array([(20.7, 40.2), (150.1, 10.9), (190.5, 200.3), (60.2, 260.8)])
    obj = SourceObject("ship", 0, (33.3, 12.6, 171.9, 250.1), polygon=poly)
    nh, nw = preprocess_shape(h, w)
    for name in ("H-Box-M", "RH-Box-M", "R-Box-M"):
        ind = np.zeros((h, w), np.uint8)
        if name == "R-Box-M":
            fill_poly_cv2(ind, np.trunc(poly).astype(np.int64))
        else:
            x0, y0, x1, y1 = obj.hbox if name == "H-Box-M" else (20.7, 10.9, 190.5, 260.8)
            ind[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1] = 1
        m = torch.from_numpy(np.where(ind > 0, IN, OUT))[None, None]
        m = F.interpolate(m, size=(nh, nw), mode="bilinear", align_corners=False)
        m = F.pad(m, (0, 1024 - nw, 0, 1024 - nh), value=OUT)
        ref = F.interpolate(m, size=(256, 256), mode="bilinear", align_corners=False)[0, 0].numpy()
        got = make_prompts(name, [obj], (h, w)).masks[0, 0]
        np.testing.assert_allclose(got, ref, atol=1e-3, err_msg=name)
