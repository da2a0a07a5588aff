"""SAM 3 beside its reference: the low-res hole filling sam3's interactive predictor applies, the
tracker features the decoder reads, and the ``sam3.pt`` converter (config from shapes, what it leaves
out and why). The mask-level parity with sam3's predictor is in tests/test_sam_family_parity.py; the
converter checks on a reference model skip where sam3 is not installed."""

import importlib.util
from collections import deque

import numpy as np
import pytest
import torch

from samrs_hf.sam.engine import SamLabeler
from samrs_hf.sam.loading import ModelLoadError, load_sam
from samrs_hf.sam.mask_holes import fill_small_holes, small_component_mask
from samrs_hf.sam.prompts import make_prompts
from samrs_hf.sam.reference.sam3 import SAM3_NEEDS
from samrs_hf.sam.reference.segment_anything import random_objects, textured_image
from samrs_hf.sam.tiny_random import tiny_random_model


def _components_up_to(region: np.ndarray, max_area: int) -> np.ndarray:
    """Breadth-first 8-connected labelling (skimage.measure.label's default in 2-D)."""
    h, w = region.shape
    seen, out = np.zeros_like(region), np.zeros_like(region)
    for y, x in zip(*np.nonzero(region)):
        if seen[y, x]:
            continue
        comp, queue = [], deque([(y, x)])
        seen[y, x] = True
        while queue:
            a, b = queue.popleft()
            comp.append((a, b))
            for c in range(max(a - 1, 0), min(a + 2, h)):
                for d in range(max(b - 1, 0), min(b + 2, w)):
                    if region[c, d] and not seen[c, d]:
                        seen[c, d] = True
                        queue.append((c, d))
        if len(comp) <= max_area:
            out[tuple(np.array(comp).T)] = True
    return out


def test_small_components_are_8_connected_and_sized_like_skimage():
    rng = np.random.default_rng(0)
    for _ in range(12):
        h, w = rng.integers(4, 48, 2)
        region = rng.random((3, h, w)) < rng.uniform(0.2, 0.7)
        max_area = int(rng.integers(1, 40))
        got = small_component_mask(torch.from_numpy(region)[:, None], max_area)[:, 0].numpy()
        for i in range(3):
            np.testing.assert_array_equal(got[i], _components_up_to(region[i], max_area))


def test_a_long_snake_is_one_component():
    region = np.zeros((40, 40), dtype=bool)  # a serpentine path of 20 rows joined at alternate ends
    region[::2] = True
    region[1::4, -1] = True
    region[3::4, 0] = True
    t = torch.from_numpy(region)[None, None]
    np.testing.assert_array_equal(small_component_mask(t, int(region.sum()))[0, 0].numpy(), region)
    assert not small_component_mask(t, int(region.sum()) - 1).any()


def test_fill_small_holes_raises_only_small_background_components():
    logits = torch.full((1, 1, 32, 32), 5.0)
    logits[0, 0, 4:6, 4:6] = -3.0  # a 4-pixel hole
    logits[0, 0, 10:30, 10:30] = -3.0  # a 400-pixel one
    out = fill_small_holes(logits, 256)
    assert torch.all(out[0, 0, 4:6, 4:6] == 10.0)
    assert torch.all(out[0, 0, 10:30, 10:30] == -3.0)
    assert torch.equal(fill_small_holes(logits, 0), logits)


def _decode(model, image, prompts_name="H-Box"):
    labeler = SamLabeler(model, dtype=torch.float32)
    h, w = image.shape[:2]
    prompts = make_prompts(prompts_name, random_objects(h, w, 3, seed=7), (h, w), **labeler.prompt_frame())
    return labeler.decode(labeler.embed([image]), 0, prompts)


def test_the_tracker_reads_the_1x_level_with_no_mem_embed_whatever_the_neck_carries():
    """transformers' default SAM 3 neck adds a 0.5x level the reference discards (scalp=1);
    ``no_mem_embed`` must go on the 1x level the decoder reads, with or without it."""
    import transformers

    three = tiny_random_model(0, "sam3")
    assert three.config.vision_config.scale_factors == [4.0, 2.0, 1.0]
    config = three.config.to_dict()
    config["vision_config"]["scale_factors"] = [4.0, 2.0, 1.0, 0.5]
    four = transformers.Sam3TrackerModel(transformers.Sam3TrackerConfig(**config))
    missing, unexpected = four.load_state_dict(three.state_dict(), strict=False)
    assert not unexpected and missing and all(".fpn_layers.3." in k for k in missing)
    image = textured_image(120, 160, seed=3)
    a, b = _decode(four, image), _decode(three, image)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        three.no_memory_embedding.zero_()
    assert not np.allclose(_decode(three, image).scores, a.scores, atol=1e-4)


def test_a_sam3_checkpoint_without_the_tracker_is_refused_by_name(tmp_path):
    path = tmp_path / "sam3.pt"
    torch.save({"model": {"detector.backbone.vision_backbone.trunk.pos_embed": torch.zeros(1, 577, 8)}}, path)
    with pytest.raises(ModelLoadError, match=r"sam3\.pt.*not a SAM 3 checkpoint.*patch_embed"):
        load_sam(str(path))


@pytest.fixture(scope="module")
def released():
    missing = [name for module, name in SAM3_NEEDS.items() if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"SAM 3's reference needs {', '.join(missing)} (pip install {' '.join(missing)})")
    from samrs_hf.sam.reference.families import build_reference
    from samrs_hf.sam.reference.sam3 import released_state_dict

    return released_state_dict(build_reference("sam3", seed=0))


def _vit(config) -> dict:
    b = config.vision_config.backbone_config
    return dict(hidden=b.hidden_size, layers=b.num_hidden_layers, heads=b.num_attention_heads, window=b.window_size,
                global_blocks=list(b.global_attn_indexes), image=b.image_size, pretrain=b.pretrain_image_size,
                mlp=b.intermediate_size, eps=b.layer_norm_eps)


def test_the_config_comes_from_the_tensor_shapes(released):
    from samrs_hf.sam.sam3_checkpoint import convert_sam3_checkpoint

    config, converted, dropped = convert_sam3_checkpoint(released)
    assert _vit(config) == dict(hidden=128, layers=2, heads=2, window=24, global_blocks=[1], image=1008,
                                pretrain=336, mlp=592, eps=1e-5)
    assert config.vision_config.scale_factors == [4.0, 2.0, 1.0]
    assert config.vision_config.backbone_feature_sizes == [[288, 288], [144, 144], [72, 72]]
    assert (config.mask_decoder_config.hidden_size, config.mask_decoder_config.mlp_dim) == (256, 2048)
    assert config.prompt_encoder_config.image_size == 1008
    # every tensor of the file is converted or left out with a reason
    assert "not SAM 3" not in dropped.values()
    assert any(k.startswith("detector.transformer.") for k in dropped)
    assert any(k.startswith("tracker.maskmem_backbone.") for k in dropped)
    assert not any(k.startswith("tracker.sam_") for k in dropped)
    assert "vision_encoder.neck.fpn_layers.2.proj2.weight" in converted
    assert "vision_encoder.neck.fpn_layers.3.proj1.weight" not in converted


def test_without_rope_tables_the_released_layout_is_assumed(released):
    from samrs_hf.sam.sam3_checkpoint import convert_sam3_checkpoint

    bare = {k: v for k, v in released.items() if not k.endswith("attn.freqs_cis")}
    with_tables = convert_sam3_checkpoint(released)[0]
    assert _vit(convert_sam3_checkpoint(bare)[0]) == _vit(with_tables)  # head width 64, window 24, last global


def test_blocks_past_the_last_global_one_are_left_out(released):
    from samrs_hf.sam.sam3_checkpoint import TRUNK, convert_sam3_checkpoint

    extra = dict(released)
    for key, value in released.items():
        if key.startswith(TRUNK + "blocks.0."):
            extra[key.replace("blocks.0.", "blocks.2.")] = value  # a windowed block after the global one
    config, converted, dropped = convert_sam3_checkpoint(extra)
    assert config.vision_config.backbone_config.num_hidden_layers == 2
    assert not any(".layers.2." in k for k in converted)
    assert TRUNK + "blocks.2.mlp.fc1.weight" in dropped


def test_a_trunk_tensor_of_no_known_role_is_an_error_not_a_silent_drop(released):
    from samrs_hf.sam.sam3_checkpoint import TRUNK, convert_sam3_checkpoint

    odd = {**released, TRUNK + "ln_post.weight": torch.ones(128)}  # the reference would apply it
    with pytest.raises(ValueError, match="ln_post.weight: a ViT tensor the SAM 3 converter does not know"):
        convert_sam3_checkpoint(odd)
