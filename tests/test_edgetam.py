"""EdgeTAM: its reference checkpoints recognised from their tensor names and converted to
``EdgeTamModel`` (RepViT variant from the shapes, memory/video tensors dropped), ``tiny-random-edgetam``
where timm is installed (a clear error naming timm elsewhere), and parity with the EdgeTAM fork's
``SAM2ImagePredictor``.

Parity: a random model made by the fork's own ``build_sam2`` from its ``configs/edgetam.yaml`` (the
config's timm ``repvit_m1`` trunk, the narrowest RepViT, with the neck, prompt encoder and mask
decoder narrowed to 32 channels by hydra overrides), saved as its checkpoint in a child process where
the fork's ``sam2`` is first on the path, loaded here through ``load_sam``; CPU fp32, per-mask IoU >=
0.99 for H-Box, CP and a mask prompt on a square and a non-square image. Skips, saying how to install
the reference, where ``SAMRS_EDGETAM_REFERENCE`` or timm is missing."""

import importlib.util

import numpy as np
import pytest
import torch

from samrs_hf.sam.edgetam_checkpoint import (
    DROPPED, HF_TRUNK, REPVIT_VARIANTS, TRUNK, convert_edgetam_tensors, repvit_backbone_config, repvit_layout,
)
from samrs_hf.sam.families import family_of_state_dict
from samrs_hf.sam.loading import ModelLoadError, load_sam
from samrs_hf.sam.sam2_checkpoint import sam2_head_configs

HAS_TIMM = importlib.util.find_spec("timm") is not None
SIZES = [(300, 300), (240, 400)]
PROMPTS = ["H-Box", "CP", "H-Box+H-Box-M"]


def _edgetam_like(dims=(8, 16, 32, 64), depths=(1, 1, 2, 1), legacy=True, d=32):
    """An EdgeTAM-layout state dict: the tensors the converter reads (RepViT trunk in timm's
    feature-extractor names, neck, prompt encoder, decoder) and video tensors it must drop."""
    z = torch.zeros
    sd = {f"{TRUNK}stem.conv1.c.weight": z(dims[0] // 2, 3, 3, 3)}
    for i, (dim, n) in enumerate(zip(dims, depths)):
        for j in range(n):
            block = f"{TRUNK}stages_{i}.blocks.{j}."
            sd[block + "token_mixer.conv.c.weight"] = z(dim, 1, 3, 3)
            sd[block + ("token_mixer.conv1.c.weight" if legacy else "token_mixer.conv1.weight")] = z(dim, 1, 1, 1)
            sd[block + "channel_mixer.conv1.c.weight"] = z(2 * dim, dim, 1, 1)
            sd[block + "channel_mixer.conv2.c.weight"] = z(dim, 2 * dim, 1, 1)
        if i:
            sd[f"{TRUNK}stages_{i}.downsample.ffn.conv1.c.weight"] = z(2 * dim, dim, 1, 1)
    for k, dim in enumerate(reversed(dims)):
        sd[f"image_encoder.neck.convs.{k}.conv.weight"] = z(d, dim, 1, 1)
    sd.update({
        "sam_prompt_encoder.mask_downscaling.3.weight": z(16, 4, 2, 2),
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": torch.ones(2, d // 2),
        **{f"sam_prompt_encoder.point_embeddings.{i}.weight": torch.full((1, d), float(i)) for i in range(4)},
        "sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight": z(64, d),
        "sam_mask_decoder.transformer.layers.0.mlp.layers.1.weight": z(d, 64),
        "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight": z(d // 2, d),
        **{f"sam_mask_decoder.iou_prediction_head.layers.{i}.weight": z(d, d) for i in range(3)},
        "no_mem_embed": z(1, 1, d), "no_mem_pos_enc": z(1, 1, d), "maskmem_tpos_enc": z(7, 1, 1, 64),
        "memory_attention.layers.0.self_attn.q_proj.weight": z(d, d), "memory_encoder.out_proj.weight": z(64, d),
        "spatial_perceiver.latents": z(256, 64), "obj_ptr_proj.layers.0.weight": z(d, d),
        "mask_downsample.weight": z(1, 1, 4, 4), "no_obj_ptr": z(1, d),
    })
    return sd


def test_edgetam_checkpoints_are_recognised_by_their_tensor_names():
    sd = _edgetam_like()
    assert family_of_state_dict({"model": sd}).name == "edgetam"
    perceiver_only = {k: v for k, v in sd.items() if not k.startswith(TRUNK)}  # the memory perceiver alone
    assert family_of_state_dict(perceiver_only).name == "edgetam"
    sam2 = {k: v for k, v in perceiver_only.items() if not k.startswith("spatial_perceiver.")}
    sam2["image_encoder.trunk.blocks.0.norm1.weight"] = torch.zeros(8)
    assert family_of_state_dict(sam2).name == "sam2"


def test_repvit_variant_comes_from_the_trunk_shapes():
    layout = repvit_layout(_edgetam_like())
    assert layout == dict(embed_dim=(8, 16, 32, 64), depth=(1, 1, 2, 1), legacy=True, mlp_ratio=2, kernel_size=3)
    custom = repvit_backbone_config(_edgetam_like())
    assert custom["architecture"] == "repvit_m1" and custom["model_type"] == "timm_wrapper"
    assert custom["model_args"]["embed_dim"] == [8, 16, 32, 64] and custom["model_args"]["depth"] == [1, 1, 2, 1]
    for (dims, depths, legacy), name in REPVIT_VARIANTS.items():
        config = repvit_backbone_config(_edgetam_like(dims, depths, legacy))
        assert config["architecture"] == name and "embed_dim" not in config["model_args"], name
        assert config["model_args"]["features_only"] and config["model_args"]["out_indices"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="no RepViT trunk"):
        repvit_layout({k: v for k, v in _edgetam_like().items() if not k.startswith(TRUNK)})


def test_neck_prompt_and_decoder_config_come_from_the_shapes():
    heads = sam2_head_configs(_edgetam_like(d=32))
    assert heads["vision"] == dict(backbone_channel_list=[64, 32, 16, 8], fpn_hidden_size=32)
    assert heads["prompt_encoder_config"] == dict(hidden_size=32, mask_input_channels=16)
    assert heads["mask_decoder_config"]["mlp_dim"] == 64 and heads["mask_decoder_config"]["attention_downsample_rate"] == 2


def test_conversion_keeps_timm_names_and_drops_the_video_tensors():
    sd = _edgetam_like()
    out = convert_edgetam_tensors(sd)
    trunk = {k for k in sd if k.startswith(TRUNK)}
    assert {HF_TRUNK + k[len(TRUNK):] for k in trunk} <= set(out)  # timm's names, moved as they are
    assert not [k for k in out if k.startswith(tuple(DROPPED))]
    assert all(DROPPED.values()) and "spatial_perceiver." in DROPPED
    assert "no_memory_embedding" in out and "vision_encoder.neck.convs.0.weight" in out
    torch.testing.assert_close(out["prompt_encoder.point_embed.weight"][:, 0], torch.arange(4.0))
    assert "mask_decoder.iou_prediction_head.proj_out.weight" in out


@pytest.mark.skipif(HAS_TIMM, reason="checks the error shown where timm is not installed")
def test_without_timm_edgetam_is_a_clear_error_naming_timm(tmp_path):
    path = tmp_path / "edgetam.pt"
    torch.save({"model": _edgetam_like()}, path)
    with pytest.raises(ModelLoadError, match=rf"{path.name}: EdgeTAM needs timm .*pip install timm"):
        load_sam(str(path))
    with pytest.raises(ModelLoadError, match=r"tiny-random-edgetam: EdgeTAM needs timm"):
        load_sam("tiny-random-edgetam")


@pytest.mark.skipif(not HAS_TIMM, reason="timm is not installed (pip install timm): EdgeTAM's trunk is a timm RepViT")
def test_tiny_random_edgetam_loads_flagged_random_and_reloads(tmp_path):
    model, info = load_sam("tiny-random-edgetam")
    assert (info.family, info.kind, info.random) == ("edgetam", "tiny-random", True)
    assert type(model).__name__ == "EdgeTamModel"
    assert info.config["backbone"]["model_args"]["embed_dim"] == [8, 16, 32, 64]
    model.save_pretrained(tmp_path / "edgetam")
    again, info2 = load_sam(str(tmp_path / "edgetam"))
    assert (info2.family, info2.kind, info2.random) == ("edgetam", "folder", True)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.fixture(scope="module")
def parity(tmp_path_factory):
    """Reference masks/scores from the fork (child process) and our labeler on its checkpoint."""
    from samrs_hf.sam.engine import SamLabeler
    from samrs_hf.sam.prompts import make_prompts
    from samrs_hf.sam.reference.edgetam import missing_reference, run_reference
    from samrs_hf.sam.reference.segment_anything import random_objects, textured_image

    reason = missing_reference()
    if reason:
        pytest.skip(reason)
    frame = {"target_length": 1024, "square": True, "mask_size": 256}  # EdgeTAM's input and mask frame
    images = [textured_image(h, w, seed=h + w) for h, w in SIZES]
    prompts = [[make_prompts(name, random_objects(h, w, 4, seed=h * w), (h, w), **frame) for name in PROMPTS]
               for h, w in SIZES]
    path = tmp_path_factory.mktemp("edgetam_parity") / "edgetam.pt"
    run = run_reference(path, images, prompts, size="tiny")
    ours, info = load_sam(str(path))
    assert (info.kind, info.family) == ("pth", "edgetam")
    labeler = SamLabeler(ours, dtype=torch.float32)
    assert labeler.prompt_frame() == frame
    return images, prompts, run.results, labeler


@pytest.mark.parametrize("index", range(len(SIZES)), ids=[f"{h}x{w}" for h, w in SIZES])
def test_engine_matches_the_edgetam_reference_predictor(parity, index):
    from samrs_hf.sam.reference.segment_anything import mask_ious

    images, prompts, results, labeler = parity
    image = images[index]
    emb = labeler.embed([image])
    fills = []
    for name, batch, (ref_masks, ref_scores) in zip(PROMPTS, prompts[index], results[index]):
        got = labeler.decode(emb, 0, batch)
        assert got.masks.shape == ref_masks.shape == (len(batch), *image.shape[:2])
        np.testing.assert_allclose(got.scores, ref_scores, rtol=1e-3, atol=1e-4, err_msg=name)
        ious = mask_ious(got.masks, ref_masks)
        assert len(ious) and min(ious) >= 0.99, (name, ious)
        fills.extend(ref_masks.mean(axis=(1, 2)))
    fills = np.asarray(fills)  # random weights must still give informative masks
    assert np.mean((fills > 0.01) & (fills < 0.99)) >= 0.5, fills
