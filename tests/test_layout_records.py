"""The typed ``ins/*.json`` record reads and writes the build's files byte for byte."""

import json

import pytest

from samrs_hf.build.records import InstanceRecord, PatchRecord
from samrs_hf.sources.records import SourceError


def _record():
    inst = InstanceRecord(category="ship", label=3, bbox=[1, 2, 30.5, 40], rbox=None,
                          segmentation={"size": [64, 48], "counts": "PPYo0"}, area=12, score=0.875,
                          truncated=True)
    return PatchRecord(image="P0001__1024__0___0", source_image="P0001", offset=(0, 0), width=48, height=64,
                       split="train", instances=[inst])


def test_patch_record_round_trips_byte_for_byte(tmp_path):
    data = _record().to_bytes()
    assert data.endswith(b"\n") and b" " not in data
    keys = list(json.loads(data))
    assert keys == ["image", "source_image", "offset", "width", "height", "split", "instances"]
    path = tmp_path / "P0001__1024__0___0.json"
    path.write_bytes(data)
    again = PatchRecord.read(path)
    assert again.to_bytes() == data
    inst = InstanceRecord.from_json(again.instances[0])
    assert inst.bbox == [1.0, 2.0, 30.5, 40.0] and inst.truncated and not inst.difficult


def test_bad_files_name_the_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"image": "x"}')
    with pytest.raises(SourceError, match=r"x\.json: instance file lacks"):
        PatchRecord.read(path)
    path.write_text("{")
    with pytest.raises(SourceError, match=r"x\.json: corrupt instance file"):
        PatchRecord.read(path)
    with pytest.raises(SourceError, match="missing instance file"):
        PatchRecord.read(tmp_path / "nope.json")
    with pytest.raises(TypeError):
        InstanceRecord.from_json(["not", "a", "dict"])
