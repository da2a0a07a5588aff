"""SEP model: multi-head forward, losses, bad input, save/load, export to stock UperNet, from_sep."""

import json

import pytest
import torch

from samrs_hf.sep import (SEPConfig, SEPForSemanticSegmentation, from_sep, resolve_backbone, segmentation_loss,
                          table8_defaults, tiny_backbone_config)

HEADS = {"sota": 18, "sior": 20, "fast": 37}


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SEPForSemanticSegmentation(SEPConfig(heads=HEADS, hidden_size=16)).eval()


@pytest.fixture(scope="module")
def x():
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_one_head_per_subset_and_logits_at_input_size(model, x):
    assert {k: v.out_channels for k, v in model.heads.items()} == HEADS
    with torch.no_grad():
        for subset, n in HEADS.items():
            assert model(x, subset=subset).logits.shape == (3, n, 64, 64)


def test_collective_batch_equals_separate_heads_and_sums_losses(model, x):
    labels = torch.randint(0, 18, (3, 64, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model(x, labels=labels, subset=["sota", "fast"], subset_sizes=[1, 2])
        sota = model(x[:1], labels=labels[:1], subset="sota")
        fast = model(x[1:], labels=labels[1:], subset="fast")
    torch.testing.assert_close(out.head_logits[0], sota.logits)
    torch.testing.assert_close(out.head_logits[1], fast.logits)
    torch.testing.assert_close(out.head_losses, torch.stack([sota.loss, fast.loss]))
    torch.testing.assert_close(out.loss, sota.loss + fast.loss)


def test_loss_ignores_255_and_is_zero_without_labelled_pixels():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 0.0]]]])  # 1 x 2 classes x 1 x 2
    labels = torch.tensor([[[0, 255]]])
    expected = -torch.log_softmax(torch.tensor([2.0, 0.0]), 0)[0]
    torch.testing.assert_close(segmentation_loss(logits, labels), expected)
    assert segmentation_loss(logits, torch.full((1, 1, 2), 255)).item() == 0.0


def test_unknown_subset_and_bad_labels_are_clear_errors(model, x):
    with pytest.raises(ValueError, match=r"no head for subset 'dior'.*\['fast', 'sior', 'sota'\]"):
        model(x, subset="dior")
    with pytest.raises(ValueError, match="pass subset"):
        model(x)
    bad = torch.full((3, 64, 64), 255)
    bad[0, 0, 0] = 18
    with pytest.raises(ValueError, match=r"subset 'sota': labels \[18\] outside \[0, 18\)"):
        model(x, labels=bad, subset="sota")
    with pytest.raises(ValueError, match="subset_sizes"):
        model(x, subset=["sota", "sior"], subset_sizes=[1, 1])


def test_save_and_auto_from_pretrained_round_trip(model, x, tmp_path):
    from transformers import AutoConfig, AutoModelForSemanticSegmentation

    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).heads == HEADS
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SEPForSemanticSegmentation)
    with torch.no_grad():
        for subset in HEADS:
            assert torch.equal(loaded(x, subset=subset).logits, model(x, subset=subset).logits)


def test_export_is_a_stock_upernet_with_equal_logits(model, x, tmp_path):
    from transformers import UperNetForSemanticSegmentation

    model.export("sior", tmp_path / "sior")
    config = json.loads((tmp_path / "sior" / "config.json").read_text())
    assert config["model_type"] == "upernet" and config["use_auxiliary_head"] is False
    assert "sep" not in json.dumps(config["architectures"]).lower()
    upernet = UperNetForSemanticSegmentation.from_pretrained(tmp_path / "sior").eval()
    with torch.no_grad():
        torch.testing.assert_close(upernet(pixel_values=x).logits, model(x, subset="sior").logits, rtol=0, atol=0)
    with pytest.raises(ValueError, match="no head"):
        model.export("isaid", tmp_path / "x")


def test_from_sep_keeps_encoder_decoder_and_adds_fresh_head(model, tmp_path):
    model.save_pretrained(tmp_path)
    ft = from_sep(tmp_path, 6, {i: f"c{i}" for i in range(6)})
    assert ft.decode_head.classifier.out_channels == 6 and ft.config.id2label[5] == "c5"
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(ft.backbone.state_dict()[k], v)
    for k, v in model.decode_head.state_dict().items():
        assert torch.equal(ft.decode_head.state_dict()[k], v)
    sep_ft = from_sep(model, 6, as_sep=True, subset_name="potsdam")
    assert dict(sep_ft.config.heads) == {"potsdam": 6}
    assert torch.equal(sep_ft.decode_head.fpn_bottleneck.conv.weight, model.decode_head.fpn_bottleneck.conv.weight)


def test_from_sep_takes_json_string_keys_and_one_head_sets_id2label(model, tmp_path):
    """id2label as a JSON config has it (string keys); a one-head SEP model's id2label is its classes."""
    names = {str(i): f"c{i}" for i in range(3)}
    assert from_sep(model, 3, names).config.id2label == {0: "c0", 1: "c1", 2: "c2"}
    sep_ft = from_sep(model, 3, names, as_sep=True, subset_name="potsdam")
    assert sep_ft.config.head_labels == {"potsdam": ["c0", "c1", "c2"]}
    assert sep_ft.config.id2label == {0: "c0", 1: "c1", 2: "c2"} and sep_ft.config.label2id["c2"] == 2
    sep_ft.save_pretrained(tmp_path)
    assert SEPForSemanticSegmentation.from_pretrained(tmp_path).config.id2label == {0: "c0", 1: "c1", 2: "c2"}
    with pytest.raises(ValueError, match="id2label"):
        from_sep(model, 3, {0: "a", 1: "b", 5: "c"}, as_sep=True)


def test_backbones_from_config_and_uncached_hub_id_error():
    from transformers import SwinConfig, VitDetConfig

    stages = ["stage1", "stage2", "stage3", "stage4"]
    configs = [tiny_backbone_config("resnet"), tiny_backbone_config("convnext"),
               SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2, image_size=32,
                          out_features=stages),
               # ViT via ViTDet: four stride-16 maps, which stock UperNet takes unchanged.
               VitDetConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=32,
                            pretrain_image_size=32, out_features=stages)]
    for backbone_config in configs:
        m = SEPForSemanticSegmentation(SEPConfig(backbone_config=backbone_config, heads={"a": 2},
                                                 hidden_size=8)).eval()
        assert m(torch.zeros(1, 3, 32, 32), subset="a").logits.shape == (1, 2, 32, 32)
    vit, checkpoint = resolve_backbone("vit-b")
    assert (vit.model_type, vit.hidden_size, vit.out_features, checkpoint) == (
        "vitdet", 768, ["stage4", "stage6", "stage8", "stage12"], None)
    with pytest.raises(ValueError, match="not available.*tiny-resnet"):
        resolve_backbone("nobody-samrs/no-such-backbone")


def test_table8_defaults():
    assert table8_defaults("resnet") == {"lr": 1e-3, "weight_decay": 5e-2, "min_lr": 5e-6}
    assert table8_defaults("resnet", finetune=True)["weight_decay"] == 1e-4
    assert table8_defaults("swin") == {"lr": 6e-5, "weight_decay": 1e-2, "min_lr": 0.0}
    assert table8_defaults("vitdet") == {"lr": 6e-5, "weight_decay": 5e-2, "min_lr": 0.0}


def test_push_to_hub_offline_fails_cleanly(model, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="offline"):
        model.push_to_hub("samrs-test/sep-offline")
