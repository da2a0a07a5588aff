"""Every SAM generation through one engine: family detection from configs and checkpoint tensors,
``tiny-random-<family>``, the engine's masks equal to the family's transformers model run directly,
mask prompts in the family's input frame, and a build recording the family."""

import json

import numpy as np
import pytest
import torch

from samrs_hf import cli
from samrs_hf.sam.engine import SamLabeler
from samrs_hf.sam.families import FAMILIES, UnknownFamilyError, family_of_state_dict, get_family
from samrs_hf.sam.loading import ModelLoadError, load_sam
from samrs_hf.sam.prompts import make_prompts
from samrs_hf.sources.records import SourceObject
from samrs_hf.sources.samples import write_hrsc2016_sample

TINY = {"sam_hq": "tiny-random-sam-hq", "sam2": "tiny-random-sam2", "sam3": "tiny-random-sam3"}
OBJECTS = [SourceObject("ship", 0, (10.0, 20.0, 100.0, 120.0)), SourceObject("ship", 0, (150.0, 40.0, 230.0, 170.0))]


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny(request):
    model, info = load_sam(TINY[request.param])
    return request.param, model, info


def _image(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_tiny_random_specs_load_their_family_flagged_random(tiny):
    family, model, info = tiny
    assert info.family == family and info.random and info.kind == "tiny-random"
    assert type(model).__name__ == FAMILIES[family].model_class
    assert info.to_dict()["family"] == family and info.config["parameters"] > 0


@pytest.mark.parametrize("family", sorted(TINY))
def test_tiny_random_weights_do_not_depend_on_the_global_generator(family):
    torch.manual_seed(1)
    a = load_sam(TINY[family])[0].state_dict()
    torch.manual_seed(2)
    b = load_sam(TINY[family])[0].state_dict()
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_plain_tiny_random_stays_sam():
    _, info = load_sam("tiny-random")
    assert info.family == "sam" and info.to_dict()["family"] == "sam"


@pytest.mark.parametrize("spec", ["tiny-random-sam5"])  # tiny-random-edgetam: tests/test_edgetam.py
def test_unknown_or_untiny_family_is_a_clear_error(spec):
    with pytest.raises(ModelLoadError, match=spec):
        load_sam(spec)


def test_family_names_and_checkpoint_tensors_are_recognised():
    assert get_family("SAM-HQ").name == "sam_hq" and get_family("sam2.1").name == "sam2"
    with pytest.raises(UnknownFamilyError, match="unknown SAM family 'sam9'"):
        get_family("sam9")
    assert family_of_state_dict({"mask_decoder.hf_token.weight": 0, "image_encoder.blocks.0.x": 0}).name == "sam_hq"
    assert family_of_state_dict({"model": {"sam_mask_decoder.iou_token.weight": 0,
                                           "image_encoder.trunk.blocks.0.x": 0}}).name == "sam2"
    assert family_of_state_dict({"sam_mask_decoder.a": 0, "image_encoder.trunk.body.stem.x": 0}).name == "edgetam"
    assert family_of_state_dict({"image_encoder.blocks.0.x": 0}).name == "sam"


def test_saved_folder_of_each_family_reloads_as_that_family(tiny, tmp_path):
    family, model, _ = tiny
    model.save_pretrained(tmp_path / family)
    again, info = load_sam(str(tmp_path / family))
    assert info.kind == "folder" and info.family == family and info.random
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a.float(), b.float(), msg=name)


def test_folder_of_another_model_type_is_refused_naming_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match=r"config.json: model_type 'bert' is not a SAM generation"):
        load_sam(str(tmp_path))


def _direct(model, family, image, prompts, frame):
    """The family's transformers model run end to end (its own forward from pixels, the square
    families' reference-equivalent input), logits resized as the family's predictor does."""
    labeler = SamLabeler(model)
    pixels, orig, inp = labeler._to_input(image)
    kwargs = {}
    if prompts.boxes is not None:
        kwargs["input_boxes"] = torch.as_tensor(labeler.transform.apply_coords(
            prompts.boxes.reshape(-1, 2, 2), orig, inp).reshape(1, -1, 4), dtype=torch.float32)
    if prompts.points is not None:
        kwargs["input_points"] = torch.as_tensor(labeler.transform.apply_coords(prompts.points, orig, inp)[None],
                                                 dtype=torch.float32)
        kwargs["input_labels"] = torch.as_tensor(prompts.point_labels[None])
    with torch.no_grad():
        out = model(pixel_values=pixels, multimask_output=False, **kwargs)
    low = out.pred_masks[0, :, :1].float()
    return labeler.postprocess(low, orig, inp)[:, 0] > 0, out.iou_scores[0, :, 0]


@pytest.mark.parametrize("name", ["H-Box", "CP"])
def test_engine_equals_the_model_run_directly(tiny, name):
    family, model, _ = tiny
    if family == "sam_hq":
        pytest.skip("transformers' SamHQModel forward departs from HQ-SAM; test_sam_family_parity holds ours to it")
    image = _image(180, 240, 1)
    labeler = SamLabeler(model)
    prompts = make_prompts(name, OBJECTS, image.shape[:2], **labeler.prompt_frame())
    got = labeler.label([image], [prompts])[0]
    masks, scores = _direct(model, family, image, prompts, labeler.prompt_frame())
    np.testing.assert_allclose(got.scores, scores.numpy(), rtol=1e-4, atol=1e-5)
    agree = (got.masks == masks.numpy()).mean()
    assert agree > 0.999, agree


def test_every_family_labels_boxes_points_and_masks_in_batches(tiny):
    family, model, _ = tiny
    labeler = SamLabeler(model, image_batch_size=2, max_masks_per_chunk=1)
    images = [_image(180, 240, 2), _image(200, 200, 3)]
    for name in ("H-Box", "CP", "RH-Box+H-Box-M"):
        prompts = [make_prompts(name, OBJECTS, im.shape[:2], **labeler.prompt_frame()) for im in images]
        batched = labeler.label(images, prompts, output="rle", labels=[[1, 2], [1, 2]])
        single = SamLabeler(model).label(images, prompts)
        for b, s in zip(batched, single):
            assert b.areas.tolist() == s.masks.sum(axis=(1, 2)).tolist()
            np.testing.assert_allclose(b.scores, s.scores, rtol=1e-4, atol=1e-5)
            assert b.gray.shape == s.masks.shape[1:]


def test_mask_prompts_follow_the_family_frame(tiny):
    family, model, _ = tiny
    labeler = SamLabeler(model)
    frame = labeler.prompt_frame()
    prompts = make_prompts("H-Box-M", OBJECTS, (180, 240), **frame)
    assert prompts.masks.shape[-2:] == labeler.mask_input_size
    if FAMILIES[family].square_input:  # stretched, not padded: the whole low-res frame is image
        box = make_prompts("H-Box-M", [SourceObject("x", 0, (0.0, 0.0, 239.0, 179.0))], (180, 240), **frame)
        assert (box.masks > 0).all()
    wrong = make_prompts("H-Box-M", OBJECTS, (180, 240), target_length=512)
    with pytest.raises(ValueError, match="mask prompts of"):
        labeler.label([_image(180, 240)], [wrong])


def test_build_with_a_tiny_sam2_records_the_family(tmp_path):
    src = write_hrsc2016_sample(tmp_path / "src")
    rc = cli.main(["build", "custom", "--format", "hrsc2016", "--source", str(src), "--out", str(tmp_path / "out"),
                   "--model", "tiny-random-sam2", "--prompt", "RH-Box+RH-Box-M", "--device", "cpu", "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "out" / "build.json").read_text())
    assert report["model"]["family"] == "sam2" and report["model"]["config"]["model_type"] == "sam2"
    assert report["model"]["config"]["backbone"]["model_type"] == "sam2_hiera_det_model"
    assert report["model"]["weights"] is None  # seeded: nothing to hash, no Hub request


def test_ablate_models_compares_generations_in_one_table(tmp_path, capsys):
    from samrs_hf.analysis.ablation_models import parse_models

    root = write_hrsc2016_sample(tmp_path / "hrsc")
    out = tmp_path / "abl"
    models = "tiny-random,tiny-random-sam2"
    assert cli.main(["ablate", "--source", str(root), "--split", "test", "--models", models, "--out", str(out),
                     "--prompts", "H-Box,CP,RH-Box+RH-Box-M"]) == 0
    data = json.loads((out / "models.json").read_text())
    assert [m["model"] for m in data["models"]] == models.split(",")
    assert [m["family"] for m in data["models"]] == ["sam", "sam2"]
    for m in data["models"]:
        assert m["images"] == 1 and m["instances"] == 2 and m["images_per_s"] > 0
        assert set(m["scores"]) == {"H-Box", "CP", "RH-Box+RH-Box-M"}
        best = max(m["scores"].items(), key=lambda kv: (kv[1][0], kv[1][1]))
        assert m["best"]["prompt"] == best[0] and m["best"]["mIoU_I"] == best[1][0]
    # each model's own Table 1 beside the comparison, equal to a single-model run
    single = tmp_path / "single"
    assert cli.main(["ablate", "--source", str(root), "--split", "test", "--model", "tiny-random-sam2",
                     "--out", str(single), "--prompts", "H-Box,CP,RH-Box+RH-Box-M"]) == 0
    assert (out / "02-tiny-random-sam2" / "table1.csv").read_text() == (single / "table1.csv").read_text()
    md = (out / "models.md").read_text()
    assert "| Prompt | tiny-random mIoU_I | tiny-random mIoU_P | tiny-random-sam2 mIoU_I |" in md
    assert "random weights" in md and "images/s" in md
    header = (out / "models.csv").read_text().splitlines()[0]
    assert header == "prompt,tiny-random:mIoU_I,tiny-random:mIoU_P,tiny-random-sam2:mIoU_I,tiny-random-sam2:mIoU_P"
    with pytest.raises(ValueError, match="names tiny-random twice"):
        parse_models("tiny-random, tiny-random")


def test_bfloat16_runs_every_family_close_to_float32(tiny):
    family, _, _ = tiny
    model, info = load_sam(TINY[family], dtype="bfloat16")
    assert info.config["dtype"] == "bfloat16"
    image = _image(180, 240, 4)
    labeler = SamLabeler(model, dtype=torch.bfloat16)
    prompts = make_prompts("H-Box+H-Box-M", OBJECTS, image.shape[:2], **labeler.prompt_frame())
    got = labeler.label([image], [prompts])[0]
    ref = SamLabeler(load_sam(TINY[family])[0]).label([image], [prompts])[0]
    assert got.masks.shape == ref.masks.shape and (got.masks == ref.masks).mean() > 0.9
    np.testing.assert_allclose(got.scores, ref.scores, atol=0.05)


def test_reference_checkpoint_lacking_its_tensors_names_the_file(tmp_path):
    path = tmp_path / "sam3.pt"
    torch.save({"model": {"detector.backbone.x": torch.zeros(1), "tracker.sam_mask_decoder.y": torch.zeros(1)}}, path)
    with pytest.raises(ModelLoadError, match=r"sam3.pt: not a SAM 3 checkpoint .*no detector\.backbone"):
        load_sam(str(path))
