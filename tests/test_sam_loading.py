"""Every ``--model`` form: tiny-random, save_pretrained folders, segment-anything .pth, Hub ids."""

import hashlib

import pytest
import torch

from samrs_hf.sam.loading import ModelLoadError, convert_sam_checkpoint, load_sam
from samrs_hf.sam.reference.segment_anything import build_reference_sam, import_segment_anything

def _digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.cpu().numpy().tobytes())
    return h.hexdigest()


def _save_pth(tmp_path, state_dict, name="sam.pth") -> str:
    path = tmp_path / name
    torch.save(state_dict, path)
    return str(path)


def test_tiny_random_is_flagged_and_seeded():
    model, info = load_sam("tiny-random")
    assert info.kind == "tiny-random" and info.random is True
    assert info.config["image_size"] == 1024 and info.config["patch_size"] == 16
    assert model.config.prompt_encoder_config.image_embedding_size * 4 == 256  # 256x256 low-res masks
    assert info.to_dict()["random"] is True
    # weights come from their own seeded generator, not the process's global RNG state
    torch.manual_seed(1234)
    torch.randn(1000)
    assert _digest(load_sam("tiny-random")[0]) == _digest(model)
    assert _digest(load_sam("tiny-random", seed=1)[0]) != _digest(model)


def test_save_pretrained_folder_round_trip(tmp_path):
    model, _ = load_sam("tiny-random")
    model.save_pretrained(tmp_path / "sam")
    loaded, info = load_sam(str(tmp_path / "sam"))
    assert info.kind == "folder" and info.random is True  # a saved tiny-random stays flagged
    assert _digest(loaded) == _digest(model)
    converted, _ = load_sam(_save_pth(tmp_path, build_reference_sam("tiny").state_dict()))
    converted.save_pretrained(tmp_path / "real")
    assert load_sam(str(tmp_path / "real"))[1].random is False


def test_folder_without_config_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"empty: not a save_pretrained SAM folder"):
        load_sam(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match=r"gone: model folder not found"):
        load_sam(str(tmp_path / "gone"))


@pytest.fixture(scope="module")
def odd_sam():
    """A segment-anything ViT with a non-standard shape to exercise config inference."""
    import_segment_anything()
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    return _build_sam(encoder_embed_dim=48, encoder_depth=3, encoder_num_heads=3,
                      encoder_global_attn_indexes=[0, 2]).eval()


def test_pth_config_inferred_from_shapes(tmp_path, odd_sam):
    path = tmp_path / "sam_odd.pth"
    torch.save(odd_sam.state_dict(), path)
    model, info = load_sam(str(path))
    assert info.kind == "pth" and info.random is False
    v = model.config.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads) == (48, 3, 3)
    assert list(v.global_attn_indexes) == [0, 2] and v.window_size == 14 and v.mlp_dim == 192
    assert (v.image_size, v.patch_size, v.output_channels) == (1024, 16, 256)
    d = model.config.mask_decoder_config
    assert (d.hidden_size, d.mlp_dim, d.num_hidden_layers, d.num_multimask_outputs, d.iou_head_depth) == (
        256, 2048, 2, 3, 3)
    # every tensor arrives: the encoders agree on an input
    x = torch.randn(1, 3, 1024, 1024)
    with torch.no_grad():
        ref = odd_sam.image_encoder(x)
        got = model.vision_encoder(x).last_hidden_state
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)


def test_convert_maps_segment_anything_keys():
    sam = build_reference_sam("tiny")
    config, sd = convert_sam_checkpoint(sam.state_dict())
    assert "pixel_mean" not in sd
    torch.testing.assert_close(sd["mask_decoder.iou_prediction_head.proj_in.weight"],
                               sam.mask_decoder.iou_prediction_head.layers[0].weight)
    torch.testing.assert_close(sd["mask_decoder.iou_prediction_head.layers.0.weight"],
                               sam.mask_decoder.iou_prediction_head.layers[1].weight)
    torch.testing.assert_close(sd["mask_decoder.output_hypernetworks_mlps.2.proj_out.bias"],
                               sam.mask_decoder.output_hypernetworks_mlps[2].layers[2].bias)
    torch.testing.assert_close(sd["vision_encoder.layers.1.layer_norm2.weight"],
                               sam.image_encoder.blocks[1].norm2.weight)
    torch.testing.assert_close(sd["shared_image_embedding.positional_embedding"],
                               sam.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix)
    assert config.vision_config.global_attn_indexes == [1]
    # wrapped checkpoints ({"model": state_dict}) convert the same
    assert convert_sam_checkpoint({"model": sam.state_dict()})[1].keys() == sd.keys()


def test_missing_pth_names_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r"sam_vit_h_4b8939\.pth: SAM checkpoint file not found"):
        load_sam(str(tmp_path / "sam_vit_h_4b8939.pth"))


def test_text_file_is_not_a_checkpoint(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("these are not weights\n")
    with pytest.raises(ModelLoadError, match=r"notes\.pth: not a PyTorch checkpoint"):
        load_sam(str(bad))


def test_unrelated_tensors_are_not_a_sam_checkpoint(tmp_path):
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, bad)
    with pytest.raises(ModelLoadError, match=r"resnet\.pth: not a segment-anything SAM checkpoint.*patch_embed"):
        load_sam(str(bad))


def test_truncated_sam_checkpoint_is_reported(tmp_path):
    sd = build_reference_sam("tiny").state_dict()
    del sd["mask_decoder.transformer.layers.1.mlp.lin2.weight"]
    path = tmp_path / "cut.pth"
    torch.save(sd, path)
    with pytest.raises(ModelLoadError, match=r"cut\.pth: checkpoint does not match.*lin2"):
        load_sam(str(path))


def test_offline_uncached_hub_id_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    expected = r"facebook/sam-vit-huge: not a local folder nor in the local Hugging Face cache, and HF_HUB_OFFLINE"
    with pytest.raises(ModelLoadError, match=expected):
        load_sam("facebook/sam-vit-huge")


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved") / "sam"
    load_sam("tiny-random")[0].save_pretrained(folder)
    return folder


def test_folder_with_missing_weights_is_refused_not_randomly_filled(tmp_path, saved_tiny):
    """transformers fills tensors absent from a folder's weights with random values and goes on;
    labelling with that would be noise recorded as a real model."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "partial"
    shutil.copytree(saved_tiny, folder)
    weights = load_file(folder / "model.safetensors")
    kept = {k: v for k, v in weights.items() if not k.startswith("mask_decoder.transformer.")}
    save_file(kept, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"partial: .*missing.*mask_decoder\.transformer"):
        load_sam(str(folder))


def test_folder_with_broken_weights_is_a_clear_error(tmp_path, saved_tiny):
    import json
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(saved_tiny, cut)
    data = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cut: cannot load SamModel"):
        load_sam(str(cut))
    reshaped = tmp_path / "reshaped"
    shutil.copytree(saved_tiny, reshaped)
    config = json.loads((reshaped / "config.json").read_text())
    config["vision_config"]["mlp_dim"] = 128  # the saved tensors are 64 wide
    (reshaped / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"reshaped: cannot load SamModel"):
        load_sam(str(reshaped))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_cuda_device_is_a_clear_error():
    with pytest.raises(ValueError, match=r"device 'cuda' is not available"):
        load_sam("tiny-random", device="cuda")
    with pytest.raises(ValueError, match=r"device 'cuda:1' is not available"):
        load_sam("tiny-random", device="cuda:1")
    with pytest.raises(ValueError, match=r"device 'gpu0' is not a torch device"):
        load_sam("tiny-random", device="gpu0")


def test_sam_checkpoint_with_a_misshapen_tensor_is_reported(tmp_path):
    sd = build_reference_sam("tiny").state_dict()
    sd["image_encoder.blocks.1.mlp.lin1.weight"] = torch.zeros(10, 64)
    path = tmp_path / "odd.pth"
    torch.save(sd, path)
    with pytest.raises(ModelLoadError, match=r"odd\.pth: checkpoint does not match.*layers\.1\.mlp\.lin1\.weight"):
        load_sam(str(path))


def test_default_attention_is_the_triton_kernel_on_cuda_and_sdpa_elsewhere(monkeypatch):
    """Measured fastest per device (benchmarks/README.md); CUDA without triton must still load."""
    from samrs_hf.sam import relpos_flash
    from samrs_hf.sam.loading import default_attn_implementation

    assert default_attn_implementation("cpu") == "sdpa"
    assert default_attn_implementation(torch.device("cpu")) == "sdpa"
    monkeypatch.setattr(relpos_flash, "triton", object())
    assert default_attn_implementation("cuda") == "triton"
    assert default_attn_implementation("cuda:1") == "triton"
    monkeypatch.setattr(relpos_flash, "triton", None)
    assert default_attn_implementation("cuda") == "sdpa"
