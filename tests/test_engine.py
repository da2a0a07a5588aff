"""SamLabeler on the seeded tiny-random model: shapes, chunking, OOM retry, batching, streaming."""

import numpy as np
import pytest
import torch

from samrs_hf.sam.engine import ImageEmbeddings, MaskResult, SamLabeler, preprocess_shape
from samrs_hf.sam.prompts import PromptBatch, make_prompts
from samrs_hf.sources.records import SourceObject
from samrs_hf.sam.loading import load_sam


@pytest.fixture(scope="module")
def model():
    return load_sam("tiny-random")[0]


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 23.0 + seed) + np.cos(yy / 31.0)) * 60 + 128
    img = np.stack([base, base[::-1], base[:, ::-1]], axis=-1) + rng.normal(0, 10, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _boxes(h, w, n, seed):
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, w * 0.7, n), rng.uniform(0, h * 0.7, n)
    bw, bh = rng.uniform(8, w * 0.3, n), rng.uniform(8, h * 0.3, n)
    return np.stack([x0, y0, x0 + bw, y0 + bh], 1).astype(np.float32)


def _box_prompts(boxes):
    return PromptBatch(boxes=boxes, points=None, point_labels=None, masks=None, box_kind="H-Box")


def _same(a: MaskResult, b: MaskResult, max_flipped=0.0005):
    """Equal up to float noise: a handful of threshold-borderline pixels may flip."""
    assert a.masks.shape == b.masks.shape
    assert np.mean(a.masks != b.masks) <= max_flipped
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)


def test_preprocess_shape_matches_resize_longest_side():
    assert preprocess_shape(600, 800, 1024) == (768, 1024)
    assert preprocess_shape(700, 1000, 1024) == (717, 1024)  # 716.8 rounds half up
    assert preprocess_shape(1024, 1024, 1024) == (1024, 1024)
    assert preprocess_shape(2000, 500, 1024) == (1024, 256)


def test_output_shapes_dtypes_and_scores(model):
    lab = SamLabeler(model)
    images = [_image(300, 420, 0), _image(256, 256, 1)]
    prompts = [_box_prompts(_boxes(300, 420, 5, 0)), _box_prompts(np.zeros((0, 4), np.float32))]
    res = lab.label(images, prompts)
    assert res[0].masks.shape == (5, 300, 420) and res[0].masks.dtype == np.bool_
    assert res[0].scores.shape == (5,) and res[0].scores.dtype == np.float32
    assert np.isfinite(res[0].scores).all()
    assert res[1].masks.shape == (0, 256, 256) and res[1].scores.shape == (0,)
    # the seeded random model draws image-dependent, non-trivial masks
    fill = res[0].masks.mean(axis=(1, 2))
    assert ((fill > 0.001) & (fill < 0.999)).any()


def test_postprocess_is_sam_upsampling(model):
    """A 256x512 image fills the top half of the 1024 frame; logits positive in the top-left quarter
    of the 256 frame cover exactly its left 128 columns after upsample, crop and resize."""
    lab = SamLabeler(model)
    low = torch.full((1, 1, 256, 256), -5.0)
    low[..., :128, :64] = 5.0
    out = lab.postprocess(low, (256, 512), (512, 1024))[0, 0] > 0
    assert out.shape == (256, 512)
    assert out[:, :128].all() and not out[:, 128:].any()


def test_chunking_gives_same_masks_as_one_chunk(model):
    img, boxes = _image(320, 320, 2), _boxes(320, 320, 7, 2)
    whole = SamLabeler(model, max_masks_per_chunk=64).label([img], [_box_prompts(boxes)])[0]
    chunked = SamLabeler(model, max_masks_per_chunk=3).label([img], [_box_prompts(boxes)])[0]
    _same(whole, chunked)


def test_out_of_memory_is_retried_with_halved_chunks(model, monkeypatch):
    img, boxes = _image(256, 300, 3), _boxes(256, 300, 8, 3)
    expected = SamLabeler(model, max_masks_per_chunk=8).label([img], [_box_prompts(boxes)])[0]
    lab = SamLabeler(model, max_masks_per_chunk=8)
    real, sizes = lab._decode_chunk, []

    def fake(emb, points, labels, boxes_, masks, orig, inp):
        sizes.append(boxes_.shape[0])
        if boxes_.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")
        return real(emb, points, labels, boxes_, masks, orig, inp)

    monkeypatch.setattr(lab, "_decode_chunk", fake)
    got = lab.label([img], [_box_prompts(boxes)])[0]
    assert sizes == [8, 4, 2, 2, 2, 2]
    assert lab._chunk_cap == 2  # later images start at the size that fitted
    _same(expected, got)


def test_encoder_out_of_memory_halves_the_image_batch(model, monkeypatch):
    lab = SamLabeler(model, image_batch_size=4)
    real, sizes = lab._encoder, []

    def fake(pixels):
        sizes.append(pixels.shape[0])
        if pixels.shape[0] > 1:
            raise RuntimeError("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate memory")
        return real(pixels)

    monkeypatch.setattr(lab, "_encoder", fake)
    emb = lab.embed([_image(64, 64, i) for i in range(3)])
    assert sizes == [3, 2, 1, 1, 1] and lab.image_batch_size == 1  # 4 -> 2 -> 1
    np.testing.assert_array_equal(emb.embeddings[1:2], lab.embed([_image(64, 64, 1)]).embeddings)


def test_other_errors_are_not_swallowed(model, monkeypatch):
    lab = SamLabeler(model)

    def broken(*args):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(lab, "_decode_chunk", broken)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        lab.label([_image(64, 64, 0)], [_box_prompts(_boxes(64, 64, 2, 0))])


def test_results_do_not_depend_on_batch_partners(model):
    imgs = [_image(200, 260, 4), _image(260, 200, 5), _image(128, 128, 6)]
    prompts = [_box_prompts(_boxes(im.shape[0], im.shape[1], 3, i)) for i, im in enumerate(imgs)]
    single = SamLabeler(model, image_batch_size=1).label(imgs, prompts)
    batched = SamLabeler(model, image_batch_size=3).label(imgs, prompts)
    for a, b in zip(single, batched):
        _same(a, b)
    # order inside the batch does not matter either
    swapped = SamLabeler(model, image_batch_size=3).label(imgs[::-1], prompts[::-1])[::-1]
    for a, b in zip(single, swapped):
        _same(a, b)


def test_embed_then_decode_equals_label(model):
    lab = SamLabeler(model, image_batch_size=2)
    imgs = [_image(240, 240, 7), _image(180, 300, 8)]
    prompts = [_box_prompts(_boxes(im.shape[0], im.shape[1], 4, i)) for i, im in enumerate(imgs)]
    emb = lab.embed(imgs)
    assert isinstance(emb, ImageEmbeddings) and len(emb) == 2
    assert emb.embeddings.shape == (2, 32, 64, 64)
    for i, expected in enumerate(lab.label(imgs, prompts)):
        got = lab.decode(emb, i, prompts[i])
        np.testing.assert_array_equal(got.masks, expected.masks)
        np.testing.assert_array_equal(got.scores, expected.scores)


def test_every_prompt_kind_decodes(model):
    """CP, boxes, mask prompts and combinations from the prompts module all run and differ."""
    h, w = 240, 320
    poly = np.array([[60, 40], [200, 80], [180, 150], [40, 110]], np.float64)
    objs = [
        SourceObject("ship", 0, (30.0, 30.0, 210.0, 160.0), polygon=poly),
        SourceObject("ship", 0, (220.0, 150.0, 300.0, 230.0)),
    ]
    lab = SamLabeler(model)
    emb = lab.embed([_image(h, w, 9)])
    seen = {}
    for name in ("CP", "H-Box", "RH-Box", "H-Box-M", "R-Box-M", "CP+RH-Box+RH-Box-M"):
        res = lab.decode(emb, 0, make_prompts(name, objs, (h, w)))
        assert res.masks.shape == (2, h, w) and res.scores.shape == (2,)
        seen[name] = res.scores
    assert len({tuple(np.round(s, 6)) for s in seen.values()}) == len(seen)


def test_bfloat16_agrees_with_float32(model):
    img, boxes = _image(256, 256, 10), _boxes(256, 256, 4, 10)
    ref = SamLabeler(model, dtype=torch.float32).label([img], [_box_prompts(boxes)])[0]
    low_model = load_sam("tiny-random", dtype=torch.bfloat16)[0]
    assert low_model.vision_encoder.layers[0].attn.qkv.weight.dtype == torch.bfloat16
    assert low_model.prompt_encoder.shared_embedding.positional_embedding.dtype == torch.float32
    low = SamLabeler(low_model, dtype=torch.bfloat16).label([img], [_box_prompts(boxes)])[0]
    inter = (ref.masks & low.masks).sum()
    union = (ref.masks | low.masks).sum()
    assert union > 0 and inter / union > 0.9
    np.testing.assert_allclose(low.scores, ref.scores, atol=0.05)


def test_bad_image_is_rejected(model):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        SamLabeler(model).label([np.zeros((10, 10), np.uint8)], [_box_prompts(np.zeros((1, 4), np.float32))])
    with pytest.raises(ValueError, match="2 images but 1 prompt"):
        SamLabeler(model).label([_image(8, 8, 0)] * 2, [_box_prompts(np.zeros((1, 4), np.float32))])


def _cpu_paint(labels, masks, hw):
    gray = np.full(hw, 255, np.uint8)
    for label, mask in zip(labels, masks):
        gray[mask] = label
    return gray


def test_rle_output_equals_encoded_masks_and_paints_gray(model):
    """output="rle": pycocotools' bytes of the masks mode's masks, their areas, the same scores, and
    the on-device gray map equal to painting the masks in order (last wins). Chunked in 3s so the
    runs and the painting cross chunk boundaries."""
    from pycocotools import mask as mask_utils

    img, boxes = _image(150, 230, 11), _boxes(150, 230, 8, 11)
    boxes[5] = boxes[2]  # two prompts on one place: the later label must win where they overlap
    labels = [3, 0, 7, 1, 254, 9, 2, 3]
    lab = SamLabeler(model, max_masks_per_chunk=3)
    ref = lab.label([img], [_box_prompts(boxes)])[0]
    got = lab.label([img], [_box_prompts(boxes)], output="rle", labels=[labels])[0]
    assert got.masks is None and ref.gray is None and ref.rles is None
    np.testing.assert_array_equal(got.scores, ref.scores)
    expected = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in ref.masks]
    assert got.rles == [{"size": [150, 230], "counts": e["counts"].decode("ascii")} for e in expected]
    assert got.areas.tolist() == [int(m.sum()) for m in ref.masks]
    assert got.gray.dtype == np.uint8 and got.gray.shape == (150, 230)
    np.testing.assert_array_equal(got.gray, _cpu_paint(labels, ref.masks, (150, 230)))
    overlap = ref.masks[2] & ref.masks[5] & ~ref.masks[6] & ~ref.masks[7]
    assert overlap.any() and (got.gray[overlap] == 9).all()
    assert (got.gray == 255).any()  # unlabelled pixels
    # masks mode paints too
    painted = lab.label([img], [_box_prompts(boxes)], labels=[labels])[0]
    np.testing.assert_array_equal(painted.gray, got.gray)


def test_rle_output_without_prompts_or_labels(model):
    lab = SamLabeler(model)
    empty = lab.label([_image(40, 50, 0)], [_box_prompts(np.zeros((0, 4), np.float32))], output="rle", labels=[[]])[0]
    assert empty.rles == [] and empty.areas.shape == (0,) and empty.scores.shape == (0,)
    assert empty.gray.shape == (40, 50) and (empty.gray == 255).all()
    plain = lab.label([_image(40, 50, 0)], [_box_prompts(_boxes(40, 50, 2, 0))], output="rle")[0]
    assert plain.gray is None and len(plain.rles) == 2


def test_rle_output_bad_arguments(model):
    lab = SamLabeler(model)
    img, prompts = _image(32, 32, 0), _box_prompts(_boxes(32, 32, 2, 0))
    with pytest.raises(ValueError, match="unknown output 'png'"):
        lab.label([img], [prompts], output="png")
    with pytest.raises(ValueError, match="1 labels for 2 prompts"):
        lab.label([img], [prompts], output="rle", labels=[[1]])
    with pytest.raises(ValueError, match="label 255 does not fit"):
        lab.label([img], [prompts], output="rle", labels=[[1, 255]])
    with pytest.raises(ValueError, match="1 images but 2 label lists"):
        lab.label([img], [prompts], output="rle", labels=[[1, 2], [3]])


def test_staged_copy_reuses_its_buffers(model):
    """The CUDA path's double-buffered staging, run on the CPU: same masks as the direct copy, and
    the second image reuses the first one's buffers (no allocation per image)."""
    img, boxes = _image(96, 120, 12), _boxes(96, 120, 7, 12)
    direct = SamLabeler(model, max_masks_per_chunk=3).label([img], [_box_prompts(boxes)])[0]
    lab = SamLabeler(model, max_masks_per_chunk=3)
    lab._stage = True
    first = lab.label([img], [_box_prompts(boxes)])[0]
    ptrs = [b.data_ptr() for b in lab._staging]
    second = lab.label([img], [_box_prompts(boxes)])[0]
    for got in (first, second):
        np.testing.assert_array_equal(got.masks, direct.masks)
        assert not any(np.shares_memory(got.masks, b.numpy()) for b in lab._staging)  # a copy, not a view
    assert [b.data_ptr() for b in lab._staging] == ptrs
    assert not np.shares_memory(first.masks, second.masks)


def test_compiled_engine_matches_eager(model):
    """compile=True (encoder and decoder under torch.compile) gives the eager masks, also after the
    prompt count changes (the decoder recompiles with a dynamic count)."""
    eager, compiled = SamLabeler(model), SamLabeler(model, compile=True)
    assert compiled._masks_from_prompts is not compiled._decode_masks
    for seed, n in [(0, 6), (1, 3), (2, 5)]:
        image, prompts = _image(200, 260, seed), _box_prompts(_boxes(200, 260, n, seed))
        got, want = compiled.label([image], [prompts])[0], eager.label([image], [prompts])[0]
        assert got.masks.shape == (n, 200, 260)
        _same(got, want, max_flipped=0.001)


def test_bad_chunk_size_and_device_are_rejected(model):
    """0 or negative masks per chunk is a mistake, not a request for one-mask chunks."""
    for bad in (0, -3):
        with pytest.raises(ValueError, match=f"max_masks_per_chunk must be >= 1 .*got {bad}"):
            SamLabeler(model, max_masks_per_chunk=bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is not available"):
            SamLabeler(model, device="cuda")


def test_image_too_elongated_for_sam_is_a_clear_error(model):
    """1x3000 resizes to 0 rows of SAM's 1024 input; say so instead of a resize error."""
    with pytest.raises(ValueError, match=r"1x3000 image .* 0x1024"):
        SamLabeler(model).label([np.zeros((1, 3000, 3), np.uint8)], [_box_prompts(np.zeros((0, 4), np.float32))])
    with pytest.raises(ValueError, match=r"0x5 image"):
        SamLabeler(model).embed([np.zeros((0, 5, 3), np.uint8)])


def test_the_labeler_does_not_cast_a_model_load_sam_prepared(monkeypatch):
    """load_sam prepares the model for its device and dtype; SamLabeler's own prepare is then a no-op
    (casting vit_h twice costs seconds), but a model in another dtype is still cast."""
    model, _ = load_sam("tiny-random", device="cpu", dtype=torch.bfloat16)
    casts = []
    original = torch.nn.Module.to
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: casts.append(k or a) or original(self, *a, **k))
    SamLabeler(model, device="cpu", dtype=torch.bfloat16)
    assert casts == []
    SamLabeler(model, device="cpu", dtype=torch.float32)
    assert casts and next(model.vision_encoder.parameters()).dtype == torch.float32
