"""The shared-image SAM mask decoder (samrs_hf.sam.fast_decoder) against transformers' forward and
segment-anything's SamPredictor, on a random SAM made by segment-anything's builder (fp32, CPU)."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from samrs_hf.sam.engine import SamLabeler
from samrs_hf.sam.fast_decoder import SharedImageDecoder
from samrs_hf.sam.loading import load_sam
from samrs_hf.sam.prompts import make_prompts
from samrs_hf.sam.reference.segment_anything import mask_ious, random_objects, reference_prompts, textured_image
from support_sam import predictor_and_labeler

SIZES = [(1024, 1024), (600, 900), (700, 500)]
BOX_PROMPTS = ["H-Box", "CP", "CP+H-Box", "RH-Box"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return predictor_and_labeler(tmp_path_factory.mktemp("fast_decoder"))


class _Counting:
    """Wraps the shared decoder to count the engine's calls into it."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args):
        self.calls += 1
        return self.inner(*args)


@pytest.mark.parametrize("name", BOX_PROMPTS)
@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_low_res_logits_equal_transformers_forward(models, hw, name):
    _, labeler = models
    h, w = hw
    emb = labeler.embed([textured_image(h, w, seed=h)])
    prompts = make_prompts(name, random_objects(h, w, 6, seed=w), (h, w))
    points, labels, boxes, _ = labeler._prompt_tensors(prompts, emb.original_sizes[0], emb.input_sizes[0])
    model = labeler.model
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=boxes,
                                             input_masks=None)
        image, pe = emb.embeddings[:1], labeler.ops.image_pe
        n = sparse.shape[0]
        want, want_iou = model.mask_decoder(image.expand(n, -1, -1, -1), pe.expand(n, -1, -1, -1), sparse, dense,
                                            multimask_output=False)
        got, got_iou = SharedImageDecoder(model.mask_decoder)(image, pe, sparse, dense[:1])
    assert got.shape == (n, 1, 256, 256)
    torch.testing.assert_close(got, want[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got_iou, want_iou[:, 0, 0], rtol=0, atol=1e-5)
    assert want.std() > 0.01  # informative logits, or the comparison would be vacuous


@pytest.mark.parametrize(("hw", "chunk"), [((1024, 1024), None), ((1024, 1024), 2), ((600, 900), None), ((700, 500), 2)],
                         ids=["1024x1024-unchunked", "1024x1024-chunks-of-2", "600x900-unchunked", "700x500-chunks-of-2"])
def test_engine_masks_equal_transformers_path_and_match_sam_predictor(models, hw, chunk):
    predictor, labeler = models
    h, w = hw
    labeler.max_masks_per_chunk = chunk
    image = textured_image(h, w, seed=h + w)
    objects = random_objects(h, w, 5, seed=h * w)
    emb = labeler.embed([image])
    predictor.set_image(image)
    counter = labeler.ops.shared_decoder = _Counting(labeler.ops.shared_decoder)
    try:
        for name in ["H-Box", "CP", "CP+H-Box"]:
            prompts = make_prompts(name, objects, (h, w))
            calls = counter.calls
            fast = labeler.decode(emb, 0, prompts)
            assert counter.calls > calls, name  # the engine took the shared path
            labeler.ops.shared_decoder = None  # transformers' own forward
            try:
                slow = labeler.decode(emb, 0, prompts)
                slow_rle = labeler.decode(emb, 0, prompts, output="rle")
            finally:
                labeler.ops.shared_decoder = counter
            fast_rle = labeler.decode(emb, 0, prompts, output="rle")
            # the same masks up to pixels whose logit sits within float noise (~1e-7) of the threshold
            assert np.mean(fast.masks != slow.masks) <= 1e-5, name
            assert min(mask_ious(fast.masks, slow.masks)) >= 0.999, name
            decoded = mask_utils.decode([{"size": r["size"], "counts": r["counts"].encode()} for r in fast_rle.rles])
            np.testing.assert_array_equal(decoded.transpose(2, 0, 1).astype(bool), fast.masks, err_msg=name)
            assert len(slow_rle.rles) == len(fast_rle.rles)
            np.testing.assert_allclose(fast_rle.areas, slow_rle.areas, rtol=1e-4, err_msg=name)
            np.testing.assert_allclose(fast.scores, slow.scores, rtol=0, atol=1e-5)
            ref_masks, ref_scores = reference_prompts(predictor, (h, w), prompts)
            assert min(mask_ious(fast.masks, ref_masks)) >= 0.99, name
            np.testing.assert_allclose(fast.scores, ref_scores, rtol=1e-3, atol=1e-4)
    finally:
        labeler.ops.shared_decoder = counter.inner
        labeler.max_masks_per_chunk = None


def test_mask_prompts_fall_back_to_transformers_forward(models):
    predictor, labeler = models
    h, w = 600, 900
    image = textured_image(h, w, seed=3)
    objects = random_objects(h, w, 4, seed=4)
    emb = labeler.embed([image])
    predictor.set_image(image)
    counter = labeler.ops.shared_decoder = _Counting(labeler.ops.shared_decoder)
    try:
        for name in ["H-Box-M", "CP+H-Box+H-Box-M"]:
            prompts = make_prompts(name, objects, (h, w))
            got = labeler.decode(emb, 0, prompts)
            ref_masks, _ = reference_prompts(predictor, (h, w), prompts)
            assert min(mask_ious(got.masks, ref_masks)) >= 0.99, name
        assert counter.calls == 0  # per-prompt dense embeddings: never shared
    finally:
        labeler.ops.shared_decoder = counter.inner


@pytest.mark.parametrize("family", ["sam_hq", "sam2"])
def test_other_families_keep_their_own_decoder(family):
    labeler = SamLabeler(load_sam(f"tiny-random-{family}")[0])
    assert labeler.ops.shared_decoder is None


@pytest.mark.parametrize("hw", [(1024, 1024), (600, 900), (700, 500), (333, 1024), (37, 1000)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_postprocess_upsamples_only_the_cropped_region_bit_for_bit(models, hw):
    """segment-anything's postprocess_masks (upsample to 1024, crop, resize) gives the same floats."""
    import torch.nn.functional as F

    _, labeler = models
    inp = labeler.ops.input_size(*hw)
    low_res = torch.randn(3, 1, 256, 256, generator=torch.Generator().manual_seed(hw[0]))
    full = F.interpolate(low_res, (1024, 1024), mode="bilinear", align_corners=False)[..., : inp[0], : inp[1]]
    if tuple(hw) != tuple(inp):
        full = F.interpolate(full, hw, mode="bilinear", align_corners=False)
    got = labeler.postprocess(low_res, hw, inp)
    assert got.shape == (3, 1, *hw)
    assert torch.equal(got, full)
