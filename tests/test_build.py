"""``samrs build``: presets, the output layout field by field, resume, refusal and bad input.

Every build uses ``--model tiny-random`` (or a tiny segment-anything ``.pth``) on the generated
sample sources of :mod:`samrs_hf.sources.samples`; outputs are checked against what the readers and the
tiling say, not against themselves.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samrs_hf import cli
from samrs_hf.sources.classes import PALETTE, SIOR_CLASSES, get_class_table
from samrs_hf.sources.geometry import object_corners
from samrs_hf.sources.readers import open_source
from samrs_hf.sources.samples import write_dior_sample, write_dota_sample, write_fair1m_sample
from samrs_hf.sources.tiling import TILING_PRESETS, load_patches, plan_patches

REPO = Path(__file__).resolve().parents[1]
LAYOUT_DIRS = ("images", "gray", "color", "ins")
INS_KEYS = ["image", "source_image", "offset", "width", "height", "split", "instances"]
INSTANCE_KEYS = ["category", "label", "bbox", "rbox", "segmentation", "area", "score", "truncated", "difficult",
                 "box_iou", "fill"]


def samrs_build(*argv) -> int:
    return cli.main(["build", *map(str, argv), "--model", "tiny-random", "--device", "cpu", "--no-progress"])


def layout_files(out: Path) -> dict[str, bytes]:
    """Every file of images/ gray/ color/ ins/ (hidden temp files included) -> bytes."""
    return {str(p.relative_to(out)): p.read_bytes()
            for d in LAYOUT_DIRS if (out / d).is_dir() for p in sorted((out / d).iterdir())}


def decode(seg: dict) -> np.ndarray:
    return mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)


def check_build(out: Path, fmt: str, source: Path, tiling, box_kind: str, limit: int | None = None) -> int:
    """Compare a build with the reader + tiling: names, pixels, every ins field, gray and color.

    Returns the number of patches checked.
    """
    src = open_source(fmt, source)
    lut = np.asarray(src.class_table.flat_palette(), dtype=np.uint8).reshape(256, 3)
    names = []
    for index, image in enumerate(src.images()):
        if limit is not None and index >= limit:
            break
        patches = plan_patches(image, tiling)
        for patch, pixels in load_patches(image, patches):
            names.append(patch.name)
            record = json.loads((out / "ins" / f"{patch.name}.json").read_text())
            assert list(record) == INS_KEYS
            assert record["image"] == patch.name
            assert record["source_image"] == image.image_id
            assert record["offset"] == list(patch.offset)
            assert (record["width"], record["height"]) == (patch.width, patch.height)
            assert record["split"] == image.split
            # The image as labelled: uncut sources keep their bytes, patches are the padded crop.
            if tiling is None or tiling.uncut:
                ext = image.image_path.suffix.lower()
                assert (out / "images" / f"{patch.name}{ext}").read_bytes() == image.image_path.read_bytes()
            else:
                assert np.array_equal(np.asarray(Image.open(out / "images" / f"{patch.name}.png")), pixels)
            gray = np.asarray(Image.open(out / "gray" / f"{patch.name}.png"))
            color = np.asarray(Image.open(out / "color" / f"{patch.name}.png"))
            assert gray.dtype == np.uint8 and gray.shape == (patch.height, patch.width)
            assert color.shape == (patch.height, patch.width, 3)
            instances = record["instances"]
            assert len(instances) == len(patch.objects)
            painted = np.full(gray.shape, 255, np.uint8)
            for inst, obj in zip(instances, patch.objects):  # source annotation order
                assert list(inst) == INSTANCE_KEYS
                assert inst["category"] == obj.category and inst["label"] == obj.label
                corners = object_corners(obj)
                if box_kind == "RH-Box":
                    expected = [*corners.min(axis=0), *corners.max(axis=0)]
                else:
                    expected = list(obj.hbox)
                assert inst["bbox"] == pytest.approx(expected, abs=1e-9)
                if obj.polygon is not None:
                    assert inst["rbox"] == pytest.approx(corners.reshape(-1).tolist(), abs=1e-9)
                else:
                    assert inst["rbox"] is None
                seg = inst["segmentation"]
                assert seg["size"] == [patch.height, patch.width] and isinstance(seg["counts"], str)
                mask = decode(seg)
                assert inst["area"] == int(mask.sum())
                assert isinstance(inst["score"], float) and np.isfinite(inst["score"])
                assert inst["truncated"] is bool(obj.truncated)
                assert inst["difficult"] is bool(obj.difficult)
                painted[mask] = obj.label  # last one wins
            assert np.array_equal(gray, painted)
            assert np.array_equal(color, lut[gray])
    assert sorted(p.stem for p in (out / "ins").glob("*.json")) == sorted(names)
    assert sorted(p.stem for p in (out / "gray").iterdir()) == sorted(names)
    return len(names)


@pytest.fixture(scope="module")
def dior(tmp_path_factory) -> Path:
    return write_dior_sample(tmp_path_factory.mktemp("src") / "dior")


@pytest.fixture(scope="module")
def fair1m_src(tmp_path_factory) -> Path:
    return write_fair1m_sample(tmp_path_factory.mktemp("src") / "fair1m")


@pytest.fixture(scope="module")
def sior_build(dior, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sior") / "out"
    assert samrs_build("sior", "--source", dior, "--out", out, "--pkl") == 0
    return out


# ------------------------------------------------------------------------------ the presets


def test_sior_layout_field_by_field(sior_build, dior):
    assert check_build(sior_build, "dior", dior, None, "H-Box") == 3
    # DIOR's uncut images keep their .jpg bytes; the test image stays marked as such.
    assert sorted(p.name for p in (sior_build / "images").iterdir()) == ["00001.jpg", "00002.jpg", "11726.jpg"]
    splits = {p.stem: json.loads(p.read_text())["split"] for p in (sior_build / "ins").glob("*.json")}
    assert splits == {"00001": "trainval", "00002": "trainval", "11726": "test"}
    # Known colour of the palette: airplane (id 0) pixels are (0, 127, 255), unlabelled white.
    gray = np.asarray(Image.open(sior_build / "gray" / "00001.png"))
    color = np.asarray(Image.open(sior_build / "color" / "00001.png"))
    assert (color[gray == 255] == 255).all()
    if (gray == 0).any():
        assert (color[gray == 0] == PALETTE[0]).all()


def test_sior_build_report(sior_build, dior):
    report = json.loads((sior_build / "build.json").read_text())
    state = json.loads((sior_build / ".samrs_build.json").read_text())
    assert report["preset"] == "sior" and report["format"] == "dior" and report["subset"] == "sior"
    assert report["source"] == str(dior.resolve())
    assert report["classes"] == list(SIOR_CLASSES)
    assert report["tiling"] is None and report["prompt"] == "H-Box" and report["pkl"] is True
    assert report["model"]["spec"] == "tiny-random" and report["model"]["random"] is True
    assert report["model"]["kind"] == "tiny-random" and report["model"]["config"]["vision_depth"] == 2
    # --dtype auto (the default): what this CPU computes fastest, and why, in build.json
    assert report["dtype_requested"] == "auto" and report["device"] == "cpu"
    assert report["dtype"] == ("bfloat16" if report["cpu_native_bf16"] else "float32")
    assert report["fingerprint"] == state["fingerprint"]
    assert report["samrs_hf_version"]
    counts = report["counts"]
    assert counts["source_images"] == 3 and counts["images_written"] == 3 and counts["patches_written"] == 3
    assert counts["objects"] == 8
    assert {k: v for k, v in counts["per_class"].items() if v} == {
        "airplane": 2, "vehicle": 2, "expressway-toll-station": 1, "ship": 1, "storagetank": 1, "windmill": 1}
    assert report["skipped"] == {"images": 0, "objects": 0}
    assert report["run"]["num_processes"] == 1 and report["run"]["patches_labelled"] == 3
    assert report["run"]["timings"]["total_s"] > 0


def test_pkl_is_samrs_release_form(sior_build):
    from samrs_hf.hub.release import safe_load_pickle

    record = json.loads((sior_build / "ins" / "00001.json").read_text())
    entries = safe_load_pickle(sior_build / "ins" / "00001.pkl")
    assert len(entries) == len(record["instances"])
    for entry, inst in zip(entries, record["instances"]):
        assert set(entry) == {"mask", "bbox", "category", "label", "size"}
        assert entry["mask"] == inst["segmentation"]
        assert entry["bbox"].tolist() == inst["bbox"]
        assert (entry["category"], entry["label"], entry["size"]) == (inst["category"], inst["label"], inst["area"])


def test_masks_stay_on_the_device_and_files_match_host_encoding(fair1m_src, tmp_path, monkeypatch):
    """The build asks the engine for RLE + gray only; its files equal what encoding the engine's
    masks on the host gives: pycocotools bytes per mask, mask sums, masks painted in order."""
    from samrs_hf.sam.engine import SamLabeler

    real, calls, masks = SamLabeler.label, [], {}

    def label(self, images, prompts, output="masks", labels=None):
        calls.append((output, labels))
        for im, res in zip(images, real(self, images, prompts)):  # the masks mode, for comparison
            masks[im.tobytes()] = res.masks
        return real(self, images, prompts, output, labels)

    monkeypatch.setattr(SamLabeler, "label", label)
    out = tmp_path / "out"
    assert samrs_build("fast", "--source", fair1m_src, "--out", out, "--limit", "1") == 0
    assert calls and all(output == "rle" and labels is not None for output, labels in calls)
    checked = 0
    for ins in sorted((out / "ins").glob("*.json")):
        record = json.loads(ins.read_text())
        pixels = np.asarray(Image.open(out / "images" / f"{record['image']}.png"))
        expected = masks[np.ascontiguousarray(pixels).tobytes()]
        gray = np.full(pixels.shape[:2], 255, np.uint8)
        for inst, m in zip(record["instances"], expected, strict=True):
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            assert inst["segmentation"] == {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode()}
            assert inst["area"] == int(m.sum())
            gray[m] = inst["label"]
            checked += 1
        assert np.array_equal(np.asarray(Image.open(out / "gray" / f"{record['image']}.png")), gray)
    assert checked >= 2


def test_sota_dota_patches(tmp_path):
    source = write_dota_sample(tmp_path / "dota")
    out = tmp_path / "out"
    assert samrs_build("sota", "--source", source, "--out", out, "--limit", "1") == 0
    assert check_build(out, "dota", source, TILING_PRESETS["dota"], "H-Box", limit=1) >= 1
    names = sorted(p.stem for p in (out / "ins").glob("*.json"))
    assert all("__1024__" in n for n in names)
    # P0001 is 1400x1000: windows at x = 0 and 1400 - 1024 = 376, both padded to 1024 rows.
    assert {n for n in names if n.startswith("P0001")} <= {"P0001__1024__0___0", "P0001__1024__376___0"}
    img = np.asarray(Image.open(out / "images" / f"{names[0]}.png"))
    assert img.shape == (1024, 1024, 3)
    report = json.loads((out / "build.json").read_text())
    assert report["tiling"]["size"] == 1024 and report["tiling"]["gap"] == 200 and report["tiling"]["iof_thr"] == 0.7
    assert report["counts"]["source_images"] == 1
    assert sum(report["counts"]["per_class"].values()) == report["counts"]["objects"]


def test_fast_fair1m_rh_box_and_limit(tmp_path):
    source = write_fair1m_sample(tmp_path / "fair1m")
    out = tmp_path / "out"
    assert samrs_build("fast", "--source", source, "--out", out, "--limit", "1") == 0
    n = check_build(out, "fair1m", source, TILING_PRESETS["fair1m"], "RH-Box", limit=1)
    assert n >= 1
    names = [p.stem for p in (out / "ins").glob("*.json")]
    assert all(name.startswith("train_0__600__") for name in names)  # --limit 1: the first image only
    report = json.loads((out / "build.json").read_text())
    assert report["prompt"] == "RH-Box" and report["limit"] == 1 and report["counts"]["source_images"] == 1
    assert report["tiling"]["size"] == 600 and report["tiling"]["gap"] == 150 and report["tiling"]["iof_thr"] == 0.5
    rboxes = [inst["rbox"] for name in names for inst in json.loads((out / "ins" / f"{name}.json").read_text())["instances"]]
    assert rboxes and all(r is not None and len(r) == 8 for r in rboxes)


def test_segment_anything_pth_model(tmp_path, dior):
    import torch
    from samrs_hf.sam.reference.segment_anything import build_reference_sam

    pth = tmp_path / "sam_tiny.pth"
    torch.save(build_reference_sam("tiny").state_dict(), pth)
    out = tmp_path / "out"
    rc = cli.main(["build", "sior", "--source", str(dior), "--out", str(out), "--model", str(pth),
                   "--device", "cpu", "--limit", "1", "--no-progress"])
    assert rc == 0
    check_build(out, "dior", dior, None, "H-Box", limit=1)
    report = json.loads((out / "build.json").read_text())
    assert report["model"]["kind"] == "pth" and report["model"]["random"] is False
    assert report["model"]["spec"] == str(pth)


# ------------------------------------------------------------------------------ resume and refusal


def test_rerun_same_command_is_a_no_op(sior_build, dior):
    before = layout_files(sior_build)
    assert samrs_build("sior", "--source", dior, "--out", sior_build, "--pkl") == 0
    assert layout_files(sior_build) == before
    report = json.loads((sior_build / "build.json").read_text())
    assert report["run"]["patches_resumed"] == 3 and report["run"]["patches_labelled"] == 0
    assert report["counts"]["objects"] == 8  # counts cover resumed images too


def test_lower_limit_keeps_finished_outputs_and_build_json_says_so(sior_build, dior, tmp_path, capsys):
    """Resume never discards finished images, so a smaller --limit leaves the earlier ones in the
    folder (and in `samrs package`): build.json and the summary must say how many are there."""
    out = tmp_path / "out"
    shutil.copytree(sior_build, out)
    before = layout_files(out)
    capsys.readouterr()
    assert samrs_build("sior", "--source", dior, "--out", out, "--pkl", "--limit", "1") == 0
    assert layout_files(out) == before  # nothing relabelled, nothing deleted
    report = json.loads((out / "build.json").read_text())
    assert report["counts"]["patches_written"] == 1 and report["counts"]["patches_in_folder"] == 3
    notes = [p for p in report["problems"]["problems"] if p["kind"] == "outputs-beyond-limit"]
    assert len(notes) == 1 and not notes[0]["skipped"] and notes[0]["message"].startswith("2 finished images")
    assert "2 more finished images in ins/ from an earlier run" in capsys.readouterr().out
    assert json.loads((sior_build / "build.json").read_text())["counts"]["patches_in_folder"] == 3


def test_refuses_other_options_unless_overwrite(sior_build, dior, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(sior_build, out)
    before = layout_files(out)
    assert samrs_build("sior", "--source", dior, "--out", out, "--prompt", "CP") == 2
    err = capsys.readouterr().err
    assert "different options" in err and "prompt: 'H-Box' -> 'CP'" in err and "--overwrite" in err
    assert layout_files(out) == before
    assert samrs_build("sior", "--source", dior, "--out", out, "--prompt", "CP", "--limit", "1", "--overwrite") == 0
    assert sorted(p.name for p in (out / "ins").iterdir()) == ["00001.json"]  # old outputs gone
    assert json.loads((out / "build.json").read_text())["prompt"] == "CP"


def test_refuses_foreign_non_empty_dir(dior, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert samrs_build("sior", "--source", dior, "--out", out) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and not (out / "ins").exists()


def test_resume_after_sigkill_is_byte_identical(sior_build, dior, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "builders" / "build_sior.py"), "--source", str(dior), "--out", str(out),
           "--pkl", "--model", "tiny-random", "--device", "cpu", "--no-progress", "--num-workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("ins/*.json")):  # wait until the first image is finished
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = len(list((out / "ins").glob("*.json")))
    assert 1 <= done < 3, "the build finished before it could be killed"
    assert not (out / "build.json").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stdout
    assert layout_files(out) == layout_files(sior_build)  # no leftover temp file either
    report = json.loads((out / "build.json").read_text())
    assert report["run"]["patches_resumed"] == done
    assert report["counts"] == json.loads((sior_build / "build.json").read_text())["counts"]


# ------------------------------------------------------------------------------ bad input


def test_corrupt_image_mid_build_is_skipped_and_reported(dior, tmp_path, capsys):
    source = tmp_path / "dior"
    shutil.copytree(dior, source)
    jpg = source / "JPEGImages-trainval" / "00002.jpg"
    jpg.write_bytes(jpg.read_bytes()[:4000])  # header intact, pixels truncated
    out = tmp_path / "out"
    assert samrs_build("sior", "--source", source, "--out", out, "--limit", "2") == 0
    assert sorted(p.stem for p in (out / "ins").glob("*.json")) == ["00001"]
    assert not any((out / d / "00002.png").exists() for d in ("gray", "color"))
    report = json.loads((out / "build.json").read_text())
    problems = report["problems"]["problems"]
    assert [p["kind"] for p in problems] == ["corrupt-image"]
    # Relative to the source, like the readers' problems: no absolute paths travel into cards.
    assert problems[0]["where"] == "JPEGImages-trainval/00002.jpg" and problems[0]["skipped"] is True
    assert report["skipped"] == {"images": 1, "objects": 0}
    assert report["counts"]["images_written"] == 1 and report["counts"]["source_images"] == 2
    # --strict turns the skip into an error naming the file.
    capsys.readouterr()
    assert samrs_build("sior", "--source", source, "--out", tmp_path / "strict", "--strict") == 2
    err = capsys.readouterr().err
    assert "00002.jpg" in err and "corrupt-image" in err


def test_reader_problems_are_carried_into_build_json(dior, tmp_path, capsys):
    source = tmp_path / "dior"
    shutil.copytree(dior, source)
    xml = source / "Annotations" / "Horizontal Bounding Boxes" / "00001.xml"
    text = xml.read_text()
    assert "<name>vehicle</name>" in text
    xml.write_text(text.replace("<name>vehicle</name>", "<name>spaceship</name>"))
    out = tmp_path / "out"
    assert samrs_build("sior", "--source", source, "--out", out, "--limit", "1") == 0
    report = json.loads((out / "build.json").read_text())
    kinds = report["problems"]["counts"]
    assert kinds == {"unknown-class": 1}
    assert "spaceship" in report["problems"]["problems"][0]["message"]
    assert report["skipped"] == {"images": 0, "objects": 1} and report["counts"]["objects"] == 2
    assert len(json.loads((out / "ins" / "00001.json").read_text())["instances"]) == 2
    capsys.readouterr()
    assert samrs_build("sior", "--source", source, "--out", tmp_path / "strict", "--strict") == 2
    assert "00001.xml" in capsys.readouterr().err


def test_skipped_counts_images_and_objects_by_what_was_dropped(dior, tmp_path):
    """An unreadable annotation file drops an image; an annotation naming an unknown image drops one object."""
    source = tmp_path / "dior"
    shutil.copytree(dior, source)
    for xml in (source / "Annotations" / "Horizontal Bounding Boxes").glob("*.xml"):
        xml.write_text("<annotation><object>")  # unreadable XML: the whole image is skipped
    # Nothing left to build: an error (exit 2), with build.json written for the record.
    assert samrs_build("sior", "--source", source, "--out", tmp_path / "dior-out") == 2
    report = json.loads((tmp_path / "dior-out" / "build.json").read_text())
    assert report["problems"]["counts"] == {"garbled-annotation": 3}
    assert report["skipped"] == {"images": 3, "objects": 0}

    from samrs_hf.sources.samples import write_coco_sample

    coco = write_coco_sample(tmp_path / "coco")
    for jpg in (coco / "train").glob("*.jpg"):
        jpg.unlink()  # both images missing: two image skips
    ann = coco / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    data["annotations"].append({"id": 99, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]})
    ann.write_text(json.dumps(data))
    assert samrs_build("custom", "--format", "coco", "--source", coco, "--out", tmp_path / "coco-out") == 2
    report = json.loads((tmp_path / "coco-out" / "build.json").read_text())
    assert report["problems"]["counts"] == {"missing-image": 3}
    assert report["skipped"] == {"images": 2, "objects": 1}


def test_write_error_stops_with_clear_message_and_no_partial_file(dior, tmp_path, monkeypatch, capsys):
    import samrs_hf.common.files as layout

    real_fdopen = os.fdopen

    class DiskFull:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])  # half the bytes reach the disk, then it is full
            raise OSError(errno.ENOSPC, "No space left on device")

    def fdopen(fd, mode="r", *a, **kw):
        f = real_fdopen(fd, mode, *a, **kw)
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else ""
        return DiskFull(f) if "/gray/.00002.png." in name else f

    monkeypatch.setattr(layout.os, "fdopen", fdopen)
    out = tmp_path / "out"
    assert samrs_build("sior", "--source", dior, "--out", out, "--num-workers", "0", "--limit", "2") == 2
    err = capsys.readouterr().err
    assert str(out / "gray" / "00002.png") in err and "No space left on device" in err
    assert not [p for d in LAYOUT_DIRS for p in (out / d).iterdir() if p.name.startswith(".")]
    assert not (out / "gray" / "00002.png").exists() and not (out / "ins" / "00002.json").exists()
    assert (out / "ins" / "00001.json").exists() and not (out / "build.json").exists()
    monkeypatch.undo()
    assert samrs_build("sior", "--source", dior, "--out", out, "--limit", "2") == 0  # resumes
    assert json.loads((out / "build.json").read_text())["run"]["patches_resumed"] == 1


def test_bad_options_are_clear_errors(dior, tmp_path, capsys):
    assert samrs_build("custom", "--source", dior, "--out", tmp_path / "a") == 2
    assert "--format" in capsys.readouterr().err
    assert samrs_build("sior", "--source", dior, "--out", tmp_path / "b", "--prompt", "R-Box") == 2
    assert "invalid prompt" in capsys.readouterr().err
    assert samrs_build("sior", "--source", dior, "--out", tmp_path / "c", "--writer-threads", "0") == 2
    assert "--writer-threads must be >= 1" in capsys.readouterr().err
    # Checked with the options, not minutes later when the model has loaded.
    assert samrs_build("sior", "--source", dior, "--out", tmp_path / "d", "--max-masks-per-chunk", "0") == 2
    assert "--max-masks-per-chunk must be >= 1" in capsys.readouterr().err
    assert cli.main(["build", "sior", "--source", str(dior), "--out", str(tmp_path / "e"), "--model", "tiny-random",
                     "--device", "gpu0"]) == 2
    assert "--device 'gpu0' is not a torch device" in capsys.readouterr().err
    assert not [p for p in "abcde" if (tmp_path / p).exists()]


def test_source_errors_come_before_the_model_and_the_out_dir(dior, tmp_path, capsys, monkeypatch):
    """A wrong layout or split is reported before SAM loads (minutes for ViT-H) and before --out is touched."""
    from samrs_hf.sam import loading as sam_loading

    monkeypatch.setattr(sam_loading, "load_sam", lambda *a, **k: pytest.fail("SAM loaded for a bad source"))
    assert samrs_build("sota", "--source", dior, "--out", tmp_path / "a") == 2
    assert "no DOTA layout found" in capsys.readouterr().err
    assert samrs_build("sior", "--source", dior, "--out", tmp_path / "b", "--splits", "train") == 2
    assert "split 'train' not found" in capsys.readouterr().err
    assert samrs_build("sior", "--source", dior, "--out", tmp_path / "c", "--images-dir", dior) == 2
    assert "--images-dir" in capsys.readouterr().err
    assert not [p for p in ("a", "b", "c") if (tmp_path / p).exists()]


def test_writer_threads_default_to_the_process_share_of_cores(monkeypatch):
    from samrs_hf.build import writer as build

    for cores, processes, want in [(2, 1, 2), (16, 1, 8), (16, 4, 4), (64, 8, 8), (16, 16, 2), (None, 1, 2)]:
        monkeypatch.setattr(build.os, "cpu_count", lambda c=cores: c)
        assert build.default_writer_threads(processes) == want, (cores, processes)


def test_patch_images_are_fast_png_with_exact_pixels():
    """Patch images use zlib level 1 (aerial photos barely compress further); pixels are lossless."""
    from samrs_hf.build import layout
    from samrs_hf.build import writer as build

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    ext, data = build._image_file(None, pixels, uncut=False)
    assert ext == ".png" and data == layout.png_bytes(pixels, compress_level=build.IMAGE_PNG_LEVEL)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), pixels)


def test_custom_preset_with_tiling_and_prompt(dior, tmp_path):
    out = tmp_path / "out"
    # One 900x900 window over the 800x800 image: padded right and bottom.
    assert samrs_build("custom", "--format", "dior-r", "--source", dior, "--out", out, "--tile-size", "900",
                       "--gap", "100", "--iof-thr", "0.5", "--prompt", "RH-Box", "--limit", "1") == 0
    from samrs_hf.sources.tiling import TilingConfig

    cfg = TilingConfig(900, 100, 0.5)
    assert check_build(out, "dior-r", dior, cfg, "RH-Box", limit=1) == 1
    assert (out / "ins" / "00001__900__0___0.json").exists()
    report = json.loads((out / "build.json").read_text())
    assert report["format"] == "dior-r" and report["prompt"] == "RH-Box"
    assert report["tiling"] == {"size": 900, "gap": 100, "iof_thr": 0.5, "img_rate_thr": 0.6,
                                "pad_value": [124, 116, 104]}
    assert report["classes"] == list(get_class_table("sior").names)


def test_custom_coco_source(tmp_path):
    from samrs_hf.sources.samples import write_coco_sample

    source = write_coco_sample(tmp_path / "coco")
    out = tmp_path / "out"
    assert samrs_build("custom", "--format", "coco", "--source", source, "--out", out, "--prompt", "CP+H-Box") == 0
    assert check_build(out, "coco", source, None, "H-Box") == 2
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.jpg", "b.jpg"]
    report = json.loads((out / "build.json").read_text())
    assert report["classes"] == ["car", "building", "tree"]  # packaging reads custom class tables here
    assert report["counts"]["per_class"] == {"car": 2, "building": 2, "tree": 1}
    assert report["prompt"] == "CP+H-Box"


def test_custom_coco_images_dir(tmp_path, capsys):
    """COCO images kept apart from the JSON: build reads them through --images-dir, as inspect does."""
    from samrs_hf.sources.samples import write_coco_sample

    source = write_coco_sample(tmp_path / "coco")
    images = tmp_path / "pixels"
    shutil.move(source / "train", images)
    out = tmp_path / "out"
    assert samrs_build("custom", "--format", "coco", "--source", source, "--out", out, "--images-dir", images,
                       "--limit", "1") == 0
    assert (out / "images" / "a.jpg").read_bytes() == (images / "a.jpg").read_bytes()
    report = json.loads((out / "build.json").read_text())
    assert report["counts"]["patches_written"] == 1 and report["problems"]["counts"] == {}
    # The image folder shapes the outputs: a rerun without it is refused, not silently mixed.
    assert samrs_build("custom", "--format", "coco", "--source", source, "--out", out, "--limit", "1") == 2
    assert "images_dir" in capsys.readouterr().err


def test_compile_flag_reaches_the_engine(dior, tmp_path, monkeypatch):
    """--compile is handed to SamLabeler (compiling itself is exercised on the GPU benchmark)."""
    from samrs_hf.sam import engine

    seen = []
    real_init = engine.SamLabeler.__init__

    def init(self, model, **kw):
        seen.append(kw.get("compile"))
        kw["compile"] = False  # compiling on this 2-core CPU would take minutes
        real_init(self, model, **kw)

    monkeypatch.setattr(engine.SamLabeler, "__init__", init)
    assert samrs_build("sior", "--source", dior, "--out", tmp_path / "out", "--limit", "1", "--compile") == 0
    assert seen == [True]
