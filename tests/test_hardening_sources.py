"""Issue #16 (hardening) for what the pipeline reads: pickles and checkpoints, paths named by
annotations, absurd coordinates, unreadable files, corrupt pixels, and problems shown once."""

import builtins
import io
import json
import logging
import os
import pickle
import pickletools
import shutil
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support_builds import SIOR_ITEMS, as_release, make_build

from samrs_hf.cli import main
from samrs_hf.sources.readers import open_source
from samrs_hf.sources.records import (
    ABSURD_COORDINATE,
    OUTSIDE_SOURCE,
    Report,
    SourceError,
    check_box,
)
from samrs_hf.hub.release import UnsafePickleError, convert_release, safe_load_pickle
from samrs_hf.common.safe_load import load_checkpoint
from samrs_hf.sources.samples import write_sample

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A labelled SIOR build (real weights flag) to turn into release trees."""
    return make_build(tmp_path_factory.mktemp("rel") / "build", "sior", SIOR_ITEMS, random=False)


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE opcode."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _dotted_eval_pickle(command: str, attr: str = "dtypes.__builtins__.__getitem__") -> bytes:
    """Protocol 4: STACK_GLOBAL numpy / <dotted name> -> builtins' __getitem__('eval')(command)."""
    code = f"__import__('os').system({command!r})"
    return (b"\x80\x04" + _u("numpy") + _u(attr) + b"\x93" + _u("eval") + b"\x85R"
            + _u(code) + b"\x85R.")


def _unframed(data: bytes, old: bytes, new: bytes) -> bytes:
    """A protocol-4/5 pickle rewritten without FRAME opcodes, with ``old`` -> ``new`` in its strings
    (how numpy 1.x spelled ``numpy.core`` where numpy 2 writes ``numpy._core``)."""
    ops = list(pickletools.genops(data))
    out = b""
    for (op, arg, pos), (_, _, end) in zip(ops, [*ops[1:], (None, None, len(data))]):
        if op.name == "FRAME":
            continue
        if op.name == "SHORT_BINUNICODE" and old.decode() in arg:
            out += _u(arg.replace(old.decode(), new.decode()))
        else:
            out += data[pos:end]
    return out


# ------------------------------------------------------------------------------- 1. pickles run no code

def test_dotted_numpy_names_reach_nothing(tmp_path, build):  # noqa: F811
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(_dotted_eval_pickle(f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*numpy\.dtypes\.__builtins__\.__getitem__"):
        safe_load_pickle(evil)
    reader = tmp_path / "reader.pkl"
    reader.write_bytes(b"\x80\x04" + _u("numpy") + _u("dtypes.__loader__.get_data") + b"\x93"
                       + _u("/etc/hostname") + b"\x85R.")
    with pytest.raises(UnsafePickleError, match=r"reader\.pkl.*__loader__\.get_data"):
        safe_load_pickle(reader)
    # In a release: a counted skip, nothing run; --strict stops with exit 2.
    rel = as_release(build, tmp_path / "rel")
    shutil.copy(evil, rel / "ins" / "00002.pkl")
    result = convert_release(rel, "sior", tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.num_rows == len(SIOR_ITEMS) - 1 and result.report.counts() == {"unsafe-file": 1}
    assert main(["convert-release", str(rel), "--subset", "sior", "--to", str(tmp_path / "h2"), "--strict",
                 "--no-stats"]) == 2
    assert not marker.exists()


RELEASE_VALUE = [{"mask": {"size": [2, 3], "counts": "abc"}, "bbox": np.arange(4.0, dtype=np.float32),
                  "rbox": np.asfortranarray(np.arange(8.0).reshape(4, 2)), "label": np.int64(4),
                  "size": np.sum(np.ones(7, bool)), "score": np.float32(0.5), "be": np.arange(3, dtype=">i4"),
                  "empty": np.zeros((0, 4)), "name": np.str_("ship"), "t": (1, 2.5, None, True, b"", b"xy")}]


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.filterwarnings("ignore:numpy.core:DeprecationWarning")  # the reference pickle.loads
@pytest.mark.parametrize("numpy_major", [1, 2])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_numpy_pickles_load(tmp_path, protocol, numpy_major):
    data = pickle.dumps(RELEASE_VALUE, protocol=protocol)
    if numpy_major == 1:
        data = (data.replace(b"numpy._core", b"numpy.core") if protocol < 4
                else _unframed(data, b"numpy._core", b"numpy.core"))
        assert b"numpy._core" not in data
    p = tmp_path / "a.pkl"
    p.write_bytes(data)
    assert _same(pickle.loads(data), safe_load_pickle(p))


@pytest.mark.parametrize("spelling", [b"numpy.dtypes\nFloat64DType", b"numpy\ndtypes.Float64DType"])
def test_dtype_classes_by_exact_name(tmp_path, spelling):
    """numpy releases that pickle a dtype through its DType class (both module spellings)."""
    data = pickle.dumps(np.arange(3.0), protocol=2).replace(b"cnumpy\ndtype\n", b"c" + spelling + b"\n")
    assert spelling in data
    p = tmp_path / "a.pkl"
    p.write_bytes(data)
    np.testing.assert_array_equal(safe_load_pickle(p), np.arange(3.0))
    # Not a door to the other attributes of numpy.dtypes.
    p.write_bytes(data.replace(b"Float64DType", b"ObjectDType"))
    with pytest.raises(UnsafePickleError, match="ObjectDType"):
        safe_load_pickle(p)


def test_dtype_state_cannot_make_an_object_dtype(tmp_path):
    """numpy's own dtype.__setstate__ accepts flags that make V8 hold object pointers."""
    class Hacked:
        def __reduce__(self):
            return np.dtype, ("V8", False, True), (3, "|", None, None, None, 8, 1, 1 | 16)
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps([Hacked()], protocol=2))
    with pytest.raises(UnsafePickleError, match="dtype state"):
        safe_load_pickle(p)


def test_checkpoint_loader_reads_numpy_values_and_refuses_code(tmp_path):
    import torch

    from samrs_hf.sam.loading import load_sam

    ckpt = tmp_path / "sep.pth"
    torch.save({"model": {"w": torch.ones(2)}, "loss_pretrain": np.arange(5.0), "iter": np.int64(3)}, ckpt)
    loaded = load_checkpoint(ckpt)
    np.testing.assert_array_equal(loaded["loss_pretrain"], np.arange(5.0))
    assert loaded["iter"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'pwned'}",)
    bad = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.x": Evil()}, bad)
    with pytest.raises(UnsafePickleError, match=r"sam_vit_b\.pth: refused.*system"):
        load_checkpoint(bad)
    with pytest.raises(UnsafePickleError, match=r"sam_vit_b\.pth: refused.*system"):
        load_sam(str(bad))
    assert not (tmp_path / "pwned").exists()


def test_every_pickle_read_goes_through_safe_load():
    """No module but samrs_hf/safe_load.py unpickles (pickle.load(s) / torch.load / Unpickler)."""
    import re

    pattern = re.compile(r"pickle\.loads?\(|torch\.load\(|Unpickler\b|np\.load\(|numpy\.load\(")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "samrs_hf").rglob("*.py")
                 if p.name != "safe_load.py" and pattern.search(p.read_text())]
    assert offenders == []


# ----------------------------------------------------------------------------------- 2. pickle bombs

BOMB_SCRIPT = textwrap.dedent("""
    import pickle, resource, sys, numpy as np
    from samrs_hf.common.errors import SamrsError as SourceError
    from samrs_hf.common.safe_load import UnsafePickleError, load_pickle as safe_load_pickle
    # 1.5 GB beyond what the interpreter and its imports already map.
    vm = next(int(ln.split()[1]) * 1024 for ln in open("/proc/self/status") if ln.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + 1_500_000_000, vm + 1_500_000_000))

    class R:
        def __init__(self, *r): self.r = r
        def __reduce__(self): return self.r

    rec = np._core.multiarray._reconstruct
    u = lambda s: b"\\x8c" + bytes([len(s)]) + s.encode()
    bombs = {
        "list-range": pickle.dumps(R(list, (range(10**8),)), protocol=4),
        "bytearray": pickle.dumps(R(bytearray, (4 * 10**9,)), protocol=4),
        "memo-index": b"\\x80\\x04N" + b"r" + (2**28).to_bytes(4, "little") + b".",
        "bytes8-length": b"\\x80\\x04\\x8e" + (3 * 10**9).to_bytes(8, "little") + b"xx.",
        "reconstruct-shape": pickle.dumps(R(rec, (np.ndarray, (10**9,), b"b")), protocol=4),
        "ndarray-call": pickle.dumps(R(np.ndarray, ((10**9,),)), protocol=4),
        "object-array": pickle.dumps(R(rec, (np.ndarray, (0,), b"b"), (1, (10**9,), np.dtype("O"), False, [1])),
                                     protocol=4),
        "short-data": pickle.dumps(R(rec, (np.ndarray, (0,), b"b"), (1, (10**9,), np.dtype("f8"), False, b"x" * 8)),
                                   protocol=4),
        "void-itemsize": pickle.dumps(R(np._core.multiarray.scalar, (np.dtype("V100000000"), b"")), protocol=4),
    }
    for name, data in bombs.items():
        path = sys.argv[1] + "/" + name + ".pkl"
        open(path, "wb").write(data)
        try:
            safe_load_pickle(path)
            print(name, len(data), "LOADED")
        except UnsafePickleError as exc:
            print(name, len(data), "refused", str(exc).split(": ", 1)[0] == path)
        except SourceError as exc:
            print(name, len(data), "corrupt", str(exc).split(": ", 1)[0] == path)
        except MemoryError:
            print(name, len(data), "MemoryError")
    # Peak resident memory of this process (ru_maxrss would carry the parent's over exec).
    print("maxrss_kb", next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("VmHWM:")))
""")


def test_pickle_bombs_are_refused_before_allocating(tmp_path):
    """Each bomb is a few dozen bytes; the loader runs under a 1.5 GB address-space cap so that a
    regression fails here (MemoryError) instead of taking the machine's memory."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", BOMB_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    results = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()}
    assert int(results.pop("maxrss_kb")[0]) < 400_000
    assert results.pop("bytes8-length")[1:] == ["corrupt", "True"]  # a length past the end: truncated
    assert {name: r[1:] for name, r in results.items()} == {name: ["refused", "True"] for name in results}
    assert int(results["list-range"][0]) <= 64 and int(results["bytearray"][0]) <= 64


def test_refused_bomb_is_a_counted_skip(tmp_path, build):  # noqa: F811
    rel = as_release(build, tmp_path / "rel")
    (rel / "ins" / "00003.pkl").write_bytes(b"\x80\x04N" + b"r" + (2**28).to_bytes(4, "little") + b".")
    result = convert_release(rel, "sior", tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.report.counts() == {"unsafe-file": 1} and "memo index" in result.report.problems[0].message


# --------------------------------------------------------------------- 3. paths outside the source

def _coco_with_names(root: Path, names: list[str]) -> Path:
    write_sample("coco", root)
    ann = root / "annotations" / "instances_train.json"
    coco = json.loads(ann.read_text())
    for image, name in zip(coco["images"], names):
        image["file_name"] = name
    ann.write_text(json.dumps(coco))
    return ann


def test_coco_file_names_outside_the_source_are_skipped(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(Path(write_sample("coco", tmp_path / "x")) / "train" / "a.jpg", other / "secret.jpg")
    _coco_with_names(tmp_path / "src", ["../../other/secret.jpg", str(other / "secret.jpg")])
    src = open_source("coco", tmp_path / "src")
    assert list(src.images()) == []
    assert src.report.counts() == {OUTSIDE_SOURCE: 2} and src.skipped_images == 2
    assert "images[0]" in src.report.problems[0].where and "../../other/secret.jpg" in src.report.problems[0].message
    # Inside --images-dir, a name with .. or an absolute one is fine.
    _coco_with_names(tmp_path / "src2", ["../train/a.jpg", str(tmp_path / "src2" / "train" / "b.jpg")])
    ok = open_source("coco", tmp_path / "src2", images_dir=tmp_path / "src2" / "train")
    assert len(list(ok.images())) == 2 and ok.report.counts().get(OUTSIDE_SOURCE) is None
    # The CLI counts them too.
    rc = main(["inspect", "--format", "coco", str(tmp_path / "src"), "--json"])
    assert rc == 0


# ------------------------------------------------------------------------------ 10a. absurd numbers

@pytest.mark.parametrize("box, kept", [
    ((0, 0, 1100, 50), True),                     # x1 = 11 x width: the last value kept
    ((0, 0, 1100.5, 50), False),
    ((-1000, 0, 10, 50), True), ((-1000.5, 0, 10, 50), False),
    ((0, 0, 1e30, 50), False), ((5, -1e30, 10, 50), False),
])
def test_absurd_coordinates_are_a_counted_skip(box, kept):
    report = Report()
    out = check_box(box, 100, 80, "f.txt:1", report)
    assert (out is not None) == kept
    assert report.counts() == ({} if kept else {ABSURD_COORDINATE: 1})


def test_absurd_coordinates_in_a_reader(tmp_path):
    root = write_sample("dota", tmp_path / "dota")
    label = root / "train" / "labelTxt" / "P0002.txt"
    label.write_text(label.read_text() + "10 10 1e30 10 1e30 40 10 40 plane 0\n")
    src = open_source("dota", root)
    list(src.images())
    assert src.report.counts() == {ABSURD_COORDINATE: 1}
    assert src.report.problems[0].where.endswith("P0002.txt:" + str(len(label.read_text().splitlines())))
    lo = open_source("dota", root, check_images=False)  # unknown size: 100000 px stands for it
    list(lo.images())
    assert lo.report.counts().get(ABSURD_COORDINATE) == 1


# ---------------------------------------------------------------------------- 10c. unreadable files

def _deny(monkeypatch, *denied: Path):
    """What chmod 000 does for a non-root user (tests run as root, where it does nothing): the
    denied paths cannot be opened or listed, and nothing below them can be stat'ed."""
    denied = [os.path.abspath(p) for p in denied]

    def blocked(path, inside_only=False):
        if isinstance(path, int):
            return False
        p = os.path.abspath(os.fspath(path))
        return any(p.startswith(d + os.sep) or (not inside_only and p == d) for d in denied)

    def wrap(fn, inside_only=False):
        def guarded(path, *a, **kw):
            if blocked(path, inside_only):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return fn(path, *a, **kw)
        return guarded

    monkeypatch.setattr(builtins, "open", wrap(builtins.open))
    monkeypatch.setattr(io, "open", wrap(io.open))
    monkeypatch.setattr(os, "listdir", wrap(os.listdir))
    monkeypatch.setattr(os, "scandir", wrap(os.scandir))
    monkeypatch.setattr(os, "stat", wrap(os.stat, inside_only=True))


UNREADABLE = {
    "dota": (["train/labelTxt/P0001.txt", "val"], 2),
    "dior": (["Annotations/Horizontal Bounding Boxes/00001.xml", "JPEGImages-test"], 2),
    "fair1m": (["validation/labelXml/0.xml"], 1),
    "hrsc2016": (["FullDataSet/Annotations/100000001.xml", "ImageSets/test.txt"], 2),
    "coco": (["annotations/instances_val.json"], 1),
}


@pytest.mark.parametrize("fmt", list(UNREADABLE))
def test_unreadable_annotation_files_and_folders_are_counted(tmp_path, monkeypatch, capsys, fmt):
    root = write_sample(fmt, tmp_path / fmt)
    if fmt == "coco":
        shutil.copy(root / "annotations" / "instances_train.json", root / "annotations" / "instances_val.json")
    names, n = UNREADABLE[fmt]
    _deny(monkeypatch, *(root / name for name in names))
    rc = main(["inspect", "--format", fmt, str(root), "--json"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    unreadable = result["problems"]["by_kind"]["unreadable-file"]
    assert sorted(p["where"] for p in unreadable) == sorted(names) and len(unreadable) == n
    assert result["images"]["read"] >= 1
    with pytest.raises(SourceError, match="unreadable-file"):  # --strict: an error naming it
        list(open_source(fmt, root, strict=True).images())


def test_unreadable_release_pickle_is_counted(tmp_path, monkeypatch, build):  # noqa: F811
    rel = as_release(build, tmp_path / "rel")
    _deny(monkeypatch, rel / "ins" / "00002.pkl")
    result = convert_release(rel, "sior", tmp_path / "hub", val_fraction=0.0, progress=False, stats=False)
    assert result.report.counts() == {"unreadable-file": 1}


# ------------------------------------------------------------------------------ 9. inspect --verify

def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels in its header and holds none of them."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body
                                + struct.pack(">I", zlib.crc32(kind + body)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_inspect_verify_decodes_every_image(tmp_path, capsys):
    root = write_sample("coco", tmp_path / "coco")
    jpg = root / "train" / "a.jpg"
    jpg.write_bytes(jpg.read_bytes()[:2048])  # header intact, pixels cut
    args = ["inspect", "--format", "coco", str(root), "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["problems"]["counts"] == {}  # headers only: passes
    assert main([*args, "--verify"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["verified"] is True and result["images"]["read"] == 1
    (problem,) = result["problems"]["by_kind"]["corrupt-image"]
    assert problem["where"] == "train/a.jpg" and "truncated" in problem["message"]
    assert main([*args, "--verify", "--strict"]) == 2


def test_decompression_bomb_header_is_named(tmp_path, capsys):
    root = write_sample("dota", tmp_path / "dota")
    (root / "train" / "images" / "P0002.png").write_bytes(_png_header(60000, 60000))
    assert main(["inspect", "--format", "dota", str(root), "--json"]) == 0
    (problem,) = json.loads(capsys.readouterr().out)["problems"]["by_kind"]["corrupt-image"]
    assert problem["where"] == "train/images/P0002.png"
    assert "60000x60000 pixels exceeds the decompression-bomb limit of 1073741824 pixels" in problem["message"]
    from samrs_hf.sources.imageio import CorruptImageError, open_rgb
    with pytest.raises(CorruptImageError, match="P0002.png: image of 60000x60000 pixels exceeds"):
        open_rgb(root / "train" / "images" / "P0002.png")
    Image.new("RGB", (4, 3)).save(tmp_path / "small.png")
    assert open_rgb(tmp_path / "small.png").shape == (3, 4, 3)


# -------------------------------------------------------------------- 13. every problem shown once

def test_inspect_shows_each_problem_once(tmp_path, capsys, caplog):
    root = write_sample("dota", tmp_path / "dota")
    (root / "train" / "images" / "P0001.png").unlink()
    with caplog.at_level(logging.INFO, logger="samrs_hf"):
        assert main(["inspect", "--format", "dota", str(root), "--max-problems", "1"]) == 0
    out = capsys.readouterr()
    assert out.out.count("P0001.txt") == 1
    assert [r for r in caplog.records if "P0001" in r.getMessage()] == []
    # A build's reader still logs its skips (nobody prints them otherwise).
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="samrs_hf"):
        list(open_source("dota", root).images())
    assert any("skipped" in r.getMessage() and "P0001" in r.getMessage() for r in caplog.records)
