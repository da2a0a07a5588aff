"""The mask decoder's attentions without projecting the image tokens (samrs_hf.sam.decoder_attention)
against transformers' SamAttention, in fp32 and bf16; the shared-image decoder in bf16; HQ-SAM's
decoder sharing the image side across prompts against its own per-prompt forward."""

import copy
import threading

import pytest
import torch
from transformers import SamMaskDecoderConfig
from transformers.models.sam.modeling_sam import SamAttention

import samrs_hf.sam.hq_decoder as hq_decoder
from samrs_hf.sam.cpu_workers import map_in_workers
from samrs_hf.sam.decoder_attention import heads, image_to_token, image_to_token_shared, token_to_image
from samrs_hf.sam.engine import SamLabeler
from samrs_hf.sam.fast_decoder import SharedImageDecoder
from samrs_hf.sam.loading import load_sam
from samrs_hf.sam.prompts import make_prompts
from samrs_hf.sam.reference.segment_anything import random_objects, textured_image
from support_sam import predictor_and_labeler

N, T, HW = 3, 7, 300  # prompts, tokens per prompt (a box prompt), image tokens (not a power of two)


def _attention(dtype=torch.float32):
    """SAM's cross attention (256 channels, 8 heads, internal 128) with biases as large as its weights,
    so dropping or misplacing a bias term shows."""
    config = SamMaskDecoderConfig()
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    attn = SamAttention(config, downsample_rate=2).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return attn.to(dtype)


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    tokens, token_pe = torch.randn(N, T, 256, generator=g), torch.randn(N, T, 256, generator=g)
    image, pe = torch.randn(N, HW, 256, generator=g), torch.randn(1, HW, 256, generator=g)
    return [x.to(dtype) for x in (tokens, token_pe, image, pe)]


def _transformers(attn, q, k, v):
    with torch.no_grad():
        return attn(query=q[:, None], key=k[:, None], value=v[:, None])[0][:, 0]


def _ours_and_theirs(dtype):
    """Each attention of the decoder, ours and transformers', on the same inputs."""
    attn = _attention(dtype)
    tokens, token_pe, image, pe = _inputs(dtype)
    keyed, query = image + pe, tokens + token_pe
    one = image[:1]
    with torch.no_grad():
        q_image = heads(attn.q_proj(one + pe), attn.num_attention_heads)[0].contiguous()
        ours = {"token->image": token_to_image(attn, query, keyed, image),
                "image->token": image_to_token(attn, keyed, image, query, tokens),
                "image->token, shared queries": image_to_token_shared(attn, q_image, one, query, tokens)}
    theirs = {"token->image": _transformers(attn, query, keyed, image),
              "image->token": image + _transformers(attn, keyed, query, tokens),
              "image->token, shared queries": one + _transformers(attn, (one + pe).expand(N, -1, -1), query, tokens)}
    return ours, theirs


def test_attentions_equal_sam_attention_in_fp32():
    ours, theirs = _ours_and_theirs(torch.float32)
    for name, want in theirs.items():
        assert ours[name].shape == want.shape, name
        torch.testing.assert_close(ours[name], want, rtol=1e-5, atol=1e-5, msg=name)
        assert want.std() > 0.3, name  # the attention did something the comparison can see


def test_attentions_in_bf16_are_as_close_to_fp32_as_sam_attention_in_bf16():
    truth, _ = _ours_and_theirs(torch.float32)
    ours, theirs = _ours_and_theirs(torch.bfloat16)
    for name, exact in truth.items():
        our_err = (ours[name].float() - exact).abs()
        their_err = (theirs[name].float() - exact).abs()
        assert our_err.mean() <= 1.5 * their_err.mean(), (name, our_err.mean(), their_err.mean())
        assert our_err.max() <= 2.0 * their_err.max(), (name, our_err.max(), their_err.max())


@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    """Our fp32 SamLabeler on a random SAM whose mask decoder is SAM's real one (256 channels)."""
    return predictor_and_labeler(tmp_path_factory.mktemp("decoder_attention"))[1]


def _decoder_inputs(labeler, hw, name, count, seed):
    emb = labeler.embed([textured_image(*hw, seed=seed)])
    prompts = make_prompts(name, random_objects(*hw, count, seed=seed + 1), hw)
    points, labels, boxes, _ = labeler._prompt_tensors(prompts, emb.original_sizes[0], emb.input_sizes[0])
    with torch.no_grad():
        sparse, dense = labeler.model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=boxes,
                                                     input_masks=None)
    return emb, sparse, dense


@pytest.mark.parametrize("name", ["H-Box", "CP+H-Box"])
def test_shared_decoder_in_bf16_is_as_close_to_fp32_as_transformers_in_bf16(sam, name):
    emb, sparse, dense = _decoder_inputs(sam, (600, 900), name, 6, seed=5)
    image, pe = emb.embeddings[:1], sam.ops.image_pe
    n = sparse.shape[0]
    decoder = sam.model.mask_decoder
    with torch.no_grad():
        exact = SharedImageDecoder(decoder)(image, pe, sparse, dense[:1])[0]
        half = copy.deepcopy(decoder).to(torch.bfloat16)
        image, pe, sparse, dense = (x.to(torch.bfloat16) for x in (image, pe, sparse, dense))
        ours = SharedImageDecoder(half)(image, pe, sparse, dense[:1])[0].float()
        theirs = half(image.expand(n, -1, -1, -1), pe.expand(n, -1, -1, -1), sparse, dense,
                      multimask_output=False)[0][:, 0].float()
    our_err, their_err = (ours - exact).abs(), (theirs - exact).abs()
    assert our_err.mean() <= 1.5 * their_err.mean(), (our_err.mean(), their_err.mean())
    # masks: the sign of the logits, where it is not within bf16 rounding of the threshold
    clear = exact.abs() > 4 * their_err.max()
    assert torch.equal((ours > 0)[clear], (exact > 0)[clear])
    assert clear.float().mean() > 0.5


def test_hq_sam_decoder_shares_the_image_side_with_the_same_logits(monkeypatch):
    labeler = SamLabeler(load_sam("tiny-random-sam_hq")[0], dtype=torch.float32)
    calls = []

    def counting(*args, **kw):
        calls.append(1)
        return shared(*args, **kw)

    shared = hq_decoder.shared_two_way
    monkeypatch.setattr(hq_decoder, "shared_two_way", counting)
    for name in ["H-Box", "CP", "CP+H-Box"]:
        emb, sparse, dense = _decoder_inputs(labeler, (400, 300), name, 5, seed=7)
        feats = tuple(f[:1] for f in emb.features)
        with torch.no_grad():
            want, want_iou = labeler.ops.decode(emb.embeddings[:1], feats, sparse, dense, False)
            got, got_iou = labeler.ops.decode(emb.embeddings[:1], feats, sparse, dense, True)
        assert len(calls) == 1, name  # only the shared call took the shared path
        calls.clear()
        assert got.shape == want.shape == (5, 1, 256, 256)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5, msg=name)
        torch.testing.assert_close(got_iou, want_iou, rtol=0, atol=1e-5, msg=name)
        assert want.std() > 1e-3, name


def test_cpu_workers_keep_the_order_the_grad_mode_and_the_callers_threads():
    threads = torch.get_num_threads()
    both = threading.Barrier(2, timeout=30)  # the two shares' first items meet: they run at once

    def probe(i):
        if threads > 1 and i in (0, 4):
            both.wait()
        return i, torch.get_num_threads(), torch.is_grad_enabled(), threading.get_ident()

    with torch.no_grad():
        seen = map_in_workers(probe, list(range(7)))
    assert [s[0] for s in seen] == list(range(7))
    assert not any(s[2] for s in seen)
    assert torch.get_num_threads() == threads  # the caller's intra-op threads are untouched
    if threads == 2:  # one single-threaded worker per intra-op thread, none of them the caller
        assert {s[1] for s in seen} == {1}
        assert len({s[3] for s in seen}) == 2 and threading.get_ident() not in {s[3] for s in seen}
    assert torch.is_grad_enabled() and map_in_workers(probe, [1, 2])[0][2]
