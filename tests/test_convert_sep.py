"""`samrs convert-sep`: official SAMRS SEP checkpoints (main_pretrain.py's .pth) -> transformers models.

The official weights are simulated: seeded tensors in the official key layout, saved the way
main_pretrain.py saves them (numpy `loss_pretrain`, optimizer and scheduler state). The numeric reference is
the plain-torch restatement of the official forward in samrs_hf.sep.convert.reference. A reduced ResNet
(same code paths, fewer and narrower blocks) keeps CPU time low; the full ResNet-50 layout is checked by keys
and shapes.
"""

import os

import numpy as np
import pytest
import torch

from samrs_hf.cli import main
from samrs_hf.common.safe_load import UnsafePickleError
from samrs_hf.sep.convert import (BACKBONE_CHOICES, ConversionError, convert_sep_checkpoint, official_logits,
                                  official_shapes, random_official_state_dict)
from samrs_hf.sep.convert.families import FAMILIES, Family
from samrs_hf.sep.convert.reference import official_encoder, official_encoder_shapes, official_model_shapes
from samrs_hf.sep.convert.reference_swin import official_swin_encoder, official_swin_encoder_shapes
from samrs_hf.sep.convert.resnet import RESNET50, encoder_key
from samrs_hf.sep.convert.swin import EXTRAS, SWIN_T, swin_pairs
from samrs_hf.sep.convert.upernet import decoder_key

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = dict(stem=8, hidden_sizes=(16, 32, 64, 128), depths=(1, 2, 1, 1), channels=16)
SMALL_SWIN = dict(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window=7)
HEADS = {"sota": 18, "sior": 20, "fast": 37}


def save_official(path, state_dict):
    """What main_pretrain.py writes (torch.save of a dict holding a numpy array)."""
    torch.save({"epoch": 7, "iteration": 80000, "state_dict": state_dict,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.05,
                                                             "params": [0, 1, 2]}]},
                "scheduler": {"T_max": 80000, "eta_min": 5e-6, "base_lrs": [1e-3], "last_epoch": 80000},
                "loss_pretrain": np.linspace(3.0, 0.5, 50)}, path)
    return path


@pytest.fixture(scope="module")
def official():
    return random_official_state_dict(official_shapes(**SMALL), seed=3)


@pytest.fixture(scope="module")
def converted(official, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("convert")
    ckpt = save_official(tmp / "last_resnet50_upernet_pretrn_model.pth", official)
    assert main(["convert-sep", str(ckpt), "--backbone", "resnet", "--to", str(tmp / "sep"), "--init", "rsp"]) == 0
    return ckpt, tmp / "sep"


def pixels(h=64, w=96, seed=5):
    return torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(seed))


def assert_logits_match(model, state_dict, x):
    expected = official_logits(x, state_dict)
    with torch.no_grad():
        for subset, ref in expected.items():
            ours = model(x, subset=subset).logits
            assert ours.shape == ref.shape == (x.shape[0], HEADS[subset], *x.shape[2:])
            assert (ours - ref).abs().max() <= 1e-4, subset


def _sep_on_meta(family, layout):
    from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation

    with torch.device("meta"):
        config = SEPConfig(backbone_config=FAMILIES[family].backbone_config(layout), heads=HEADS,
                           hidden_size=layout.get("embed_dim", 0) * 2 or 512)
        return {k: tuple(v.shape) for k, v in SEPForSemanticSegmentation(config).state_dict().items()}


def test_full_resnet50_layout_has_396_keys_and_fills_the_sep_model_exactly():
    from transformers import ResNetBackbone

    shapes = official_shapes()
    assert len(shapes) == 396
    mapped = {(encoder_key(k.removeprefix("encoder.")) and "backbone." + encoder_key(k.removeprefix("encoder.")))
              or decoder_key(k): tuple(v) for k, v in shapes.items()}
    assert mapped == _sep_on_meta("resnet", RESNET50)
    with torch.device("meta"):
        backbone = ResNetBackbone(FAMILIES["resnet"].backbone_config(RESNET50))
    assert {encoder_key(k): tuple(v) for k, v in official_encoder_shapes().items()} == {
        k: tuple(v.shape) for k, v in backbone.state_dict().items()}


def test_full_swin_t_layout_has_267_keys_and_fills_the_sep_model_exactly():
    encoder = official_swin_encoder_shapes()
    shapes = official_model_shapes(encoder, (96, 192, 384, 768), 192)
    assert len(shapes) == 267
    mapped = {}
    for key, shape in shapes.items():
        if key.startswith("encoder."):
            pairs = swin_pairs(key.removeprefix("encoder."), torch.empty(shape, device="meta"))
            mapped.update({"backbone." + k: tuple(v.shape) for k, v in pairs})
        else:
            mapped[decoder_key(key)] = tuple(shape)
    mapped.update({"backbone." + k: (96 * 8,) for k in EXTRAS})
    assert mapped == _sep_on_meta("swin", SWIN_T)
    assert sum(k.endswith("relative_position_index") for k in encoder) == 12  # the 12 left-out buffers


def test_converted_model_loads_with_auto_class_and_equals_the_official_forward(converted, official):
    from transformers import AutoModelForSemanticSegmentation

    model = AutoModelForSemanticSegmentation.from_pretrained(converted[1]).eval()
    assert type(model).__name__ == "SEPForSemanticSegmentation"
    assert model.config.heads == HEADS and model.config.hidden_size == SMALL["channels"]
    assert_logits_match(model, official, pixels())
    # BatchNorm running statistics are kept, not re-initialised
    assert torch.equal(model.backbone.embedder.embedder.normalization.running_var, official["encoder.bn1.running_var"])
    assert torch.equal(model.decode_head.fpn_bottleneck.batch_norm.running_mean,
                       official["decoder.fpn_bottleneck.bn.running_mean"])


def test_export_gives_stock_upernet_with_official_logits_and_from_sep_fine_tunes(converted, official, tmp_path):
    from transformers import UperNetForSemanticSegmentation

    from samrs_hf.sep import SEPForSemanticSegmentation, from_sep

    sep = SEPForSemanticSegmentation.from_pretrained(converted[1])
    upernet = UperNetForSemanticSegmentation.from_pretrained(sep.export("fast", tmp_path / "fast")).eval()
    x = pixels(seed=6)
    with torch.no_grad():
        assert (upernet(x).logits - official_logits(x, official)["fast"]).abs().max() <= 1e-4
    assert (tmp_path / "fast" / "preprocessor_config.json").is_file()
    assert upernet.config.id2label[0] == sep.config.head_labels["fast"][0]
    tuned = from_sep(converted[1], num_labels=6)
    assert torch.equal(tuned.backbone.encoder.stages[1].layers[1].layer[1].convolution.weight,
                       official["encoder.layer2.1.conv2.weight"])


def test_folder_has_processor_with_official_normalisation_and_a_card_naming_the_source(converted):
    import json
    import hashlib

    ckpt, folder = converted
    proc = json.loads((folder / "preprocessor_config.json").read_text())
    assert proc["image_mean"] == [0.485, 0.456, 0.406] and proc["image_std"] == [0.229, 0.224, 0.225]
    assert proc["rescale_factor"] == pytest.approx(1 / 255) and proc["do_resize"] is False
    card = (folder / "README.md").read_text()
    assert ckpt.name in card and hashlib.sha256(ckpt.read_bytes()).hexdigest() in card
    assert "reports no Table 9 scores" in card  # a reduced ResNet is not the paper's ResNet-50
    assert "iteration 80000" in card and "loss_pretrain" in card and "@inproceedings{wang2023samrs" in card


def test_card_of_resnet50_quotes_its_table9_rows(tmp_path):
    from samrs_hf.sep.convert import converted_card

    common = dict(source=tmp_path / "x.pth", sha256="0" * 64, form="full", backbone="resnet50", meta={},
                  dropped={}, max_diff={"sota": 1e-7}, heads=HEADS)
    rsp = converted_card(init="rsp", **common)
    assert "| RSP+SEP | 76.03 | 90.66 | 47.62 | 71.44 |" in rsp and "73.59" not in rsp
    unknown = converted_card(init=None, **common)
    assert all(v in unknown for v in ("64.79", "73.59", "76.03")) and "does not record its initialisation" in unknown


@pytest.mark.parametrize("wrap", ["module.{}", "{part}.module.{rest}"])
def test_data_parallel_prefixes_are_read(official, tmp_path, wrap):
    """DDP saves `module.` in front; main_pretrain.py without distributed wraps each part in DataParallel."""
    def rename(key):
        part, rest = key.split(".", 1)
        return wrap.format(key, part=part, rest=rest)

    ckpt = save_official(tmp_path / "ck.pth", {rename(k): v for k, v in official.items()})
    result = convert_sep_checkpoint(ckpt, "resnet", tmp_path / "out")
    assert result.tensors == len(official) and max(result.max_diff.values()) <= 1e-4
    from samrs_hf.sep import SEPForSemanticSegmentation

    assert_logits_match(SEPForSemanticSegmentation.from_pretrained(tmp_path / "out").eval(), official, pixels(32, 32))


def test_encoder_file_converts_to_a_transformers_backbone(official, tmp_path):
    from transformers import ResNetBackbone

    from samrs_hf.sep import SEPForSemanticSegmentation

    encoder = {k.removeprefix("encoder."): v for k, v in official.items() if k.startswith("encoder.")}
    ckpt = save_official(tmp_path / "best_resnet50_upernet_pretrn_model_encoder.pth", encoder)
    result = convert_sep_checkpoint(ckpt, "resnet", tmp_path / "enc")
    assert result.form == "encoder" and result.tensors == len(encoder)
    backbone = ResNetBackbone.from_pretrained(tmp_path / "enc").eval()
    x = pixels(seed=7)
    with torch.no_grad():
        for ours, ref in zip(backbone(x).feature_maps, official_encoder(x, encoder, prefix="")):
            assert (ours - ref).abs().max() <= 1e-4
    assert (tmp_path / "enc" / "preprocessor_config.json").is_file()
    sep = SEPForSemanticSegmentation.from_backbone(str(tmp_path / "enc"))  # SEP / fine-tuning starts from it
    assert torch.equal(sep.backbone.embedder.embedder.convolution.weight, encoder["conv1.weight"])


def test_unknown_key_missing_key_and_unknown_entry_are_errors_listing_them(official, tmp_path):
    extra = {**official, "decoder.conv_seg.weight": torch.zeros(18, 16, 1, 1)}
    with pytest.raises(ConversionError, match="decoder.conv_seg.weight"):
        convert_sep_checkpoint(save_official(tmp_path / "a.pth", extra), "resnet", tmp_path / "a")
    missing = {k: v for k, v in official.items() if k != "encoder.layer3.0.bn2.running_var"}
    with pytest.raises(ConversionError, match=r"missing \[.*layers\.0\.layer\.1\.normalization\.running_var"):
        convert_sep_checkpoint(save_official(tmp_path / "b.pth", missing), "resnet", tmp_path / "b")
    torch.save({"state_dict": official, "ema": 1}, tmp_path / "c.pth")
    with pytest.raises(ConversionError, match="unknown top-level entries \\['ema'\\]"):
        convert_sep_checkpoint(tmp_path / "c.pth", "resnet", tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")  # nothing written


def test_stride_on_the_1x1_conv_would_fail_the_check_and_write_nothing(official, tmp_path, monkeypatch):
    """The check is what makes a conversion exact: mmseg's 'caffe' stride placement has the same shapes."""
    real = Family.backbone_config

    def caffe_style(self, layout):
        config = real(self, layout)
        config.downsample_in_bottleneck = True
        return config

    monkeypatch.setattr(Family, "backbone_config", caffe_style)
    with pytest.raises(ConversionError, match="differs from the official forward"):
        convert_sep_checkpoint(save_official(tmp_path / "ck.pth", official), "resnet", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_checkpoint_asking_for_code_is_refused_and_not_run(official, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"state_dict": official, "loss_pretrain": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(UnsafePickleError, match="evil.pth"):
        convert_sep_checkpoint(tmp_path / "evil.pth", "resnet", tmp_path / "out")
    assert not marker.exists()


@pytest.mark.parametrize("backbone, keys, message", [
    ("vit-b", None, "multi-scale neck"),
    ("swin-t", None, "those of a resnet backbone"),
    ("resnet50", None, "pass --backbone resnet"),
    ("resnet", {"decoder.blocks.0.conv1.0.weight": (4, 4, 3, 3)}, "UNet"),
    ("resnet", {"encoder.stem.0.weight": (4, 3, 3, 3)}, "deep stem"),
])
def test_inexact_conversions_are_refused_with_what_is_missing(official, tmp_path, backbone, keys, message):
    sd = dict(official)
    if keys:
        if "decoder.blocks" in next(iter(keys)):
            sd = {k: v for k, v in sd.items() if not k.startswith("decoder.")}
        else:
            sd = {k: v for k, v in sd.items() if not k.startswith("encoder.conv1")}
        sd.update({k: torch.zeros(s) for k, s in keys.items()})
    with pytest.raises(ConversionError, match=message):
        convert_sep_checkpoint(save_official(tmp_path / "ck.pth", sd), backbone, tmp_path / "out")


def test_swin_keys_under_a_resnet_flag_are_refused(tmp_path):
    sd = {"encoder.layers.0.blocks.0.attn.relative_position_bias_table": torch.zeros(169, 3),
          "encoder.patch_embed.proj.weight": torch.zeros(96, 3, 4, 4), "decoder.psp_modules.0.1.conv.weight":
          torch.zeros(4, 4, 1, 1)}
    with pytest.raises(ConversionError, match="those of a swin backbone"):
        convert_sep_checkpoint(save_official(tmp_path / "ck.pth", sd), "resnet50", tmp_path / "out")


def test_cli_refusal_is_one_line_exit_2(official, tmp_path, capsys):
    ckpt = save_official(tmp_path / "ck.pth", official)
    assert main(["convert-sep", str(ckpt), "--backbone", "vit-b", "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("samrs convert-sep: error: --backbone vit-b") and "\n" not in err
    assert main(["convert-sep", str(ckpt), "--backbone", "vgg16", "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--backbone 'vgg16': unknown; use one of " + ", ".join(BACKBONE_CHOICES) in err and "\n" not in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    assert main(["convert-sep", str(ckpt), "--backbone", "resnet", "--to", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_push_to_hub_uploads_the_written_folder(official, tmp_path, monkeypatch):
    import samrs_hf.sep.card as card

    calls = []
    monkeypatch.setattr(card, "push_folder", lambda folder, repo: calls.append((folder, repo, sorted(
        p.name for p in folder.iterdir()))))
    result = convert_sep_checkpoint(save_official(tmp_path / "ck.pth", official), "resnet", tmp_path / "out",
                                    push_to_hub="me/sep-r50")
    assert result.pushed_to == "me/sep-r50"
    assert calls == [(tmp_path / "out", "me/sep-r50",
                      ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"])]


def test_a_file_of_another_model_is_refused_naming_it(tmp_path):
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)}, tmp_path / "sam.pth")
    with pytest.raises(ConversionError, match="sam.pth: .*not those of an SEP encoder"):
        convert_sep_checkpoint(tmp_path / "sam.pth", "resnet50", tmp_path / "out")


@pytest.fixture(scope="module")
def official_swin():
    shapes = official_model_shapes(official_swin_encoder_shapes(**SMALL_SWIN), (8, 16, 32, 64), 16)
    return random_official_state_dict(shapes, seed=4)


@pytest.mark.parametrize("size", [(224, 224), (64, 96)])
def test_swin_keeps_the_official_shift_in_every_stage(official_swin, tmp_path, size):
    """224: stage 4 is 7x7, the window itself (a plain SwinModel would stop shifting there); 64x96: stage 4 is
    smaller than the window, padded and still shifted, as the official Swin does."""
    from samrs_hf.sep import SEPForSemanticSegmentation

    result = convert_sep_checkpoint(save_official(tmp_path / "swin.pth", official_swin), "swin", tmp_path / "out")
    assert result.dropped["encoder.*.relative_position_index"].startswith("a fixed function of the window size")
    assert set(result.added) == set(EXTRAS)
    model = SEPForSemanticSegmentation.from_pretrained(tmp_path / "out").eval()
    assert model.config.backbone_config.model_type == "swin" and model.config.hidden_size == 16
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(8))
    expected = official_logits(x, official_swin, encoder=official_swin_encoder)
    with torch.no_grad():
        for subset, ref in expected.items():
            assert (model(x, subset=subset).logits - ref).abs().max() <= 1e-4, subset


def test_a_swin_that_stops_shifting_where_the_map_fits_the_window_fails_the_check(official_swin, tmp_path,
                                                                                  monkeypatch):
    """What a plain SwinModel does (set_shift_and_window_size) is caught, not written."""
    from transformers.models.swin import modeling_swin

    real = modeling_swin.SwinLayer.forward
    monkeypatch.setattr(modeling_swin.SwinLayer, "forward", lambda self, hidden, dims, always_partition=False, **kw:
                        real(self, hidden, dims, always_partition=False, **kw))
    with pytest.raises(ConversionError, match="differs from the official forward"):
        convert_sep_checkpoint(save_official(tmp_path / "swin.pth", official_swin), "swin", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_swin_encoder_file_and_a_wrong_relative_position_index(official_swin, tmp_path):
    from transformers import SwinBackbone

    encoder = {k.removeprefix("encoder."): v for k, v in official_swin.items() if k.startswith("encoder.")}
    convert_sep_checkpoint(save_official(tmp_path / "enc.pth", encoder), "swin", tmp_path / "enc")
    backbone = SwinBackbone.from_pretrained(tmp_path / "enc").eval()
    x = pixels(seed=9)
    with torch.no_grad():
        for ours, ref in zip(backbone(x).feature_maps, official_swin_encoder(x, encoder, prefix="")):
            assert (ours - ref).abs().max() <= 1e-4
    bad = dict(encoder)
    bad["layers.1.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    with pytest.raises(ConversionError, match="relative_position_index differs"):
        convert_sep_checkpoint(save_official(tmp_path / "bad.pth", bad), "swin", tmp_path / "bad")


def test_swin_t_flag_refuses_another_size_and_card_quotes_swin_t_table9(official_swin, tmp_path):
    from samrs_hf.sep.convert import converted_card

    with pytest.raises(ConversionError, match="pass --backbone swin"):
        convert_sep_checkpoint(save_official(tmp_path / "s.pth", official_swin), "swin-t", tmp_path / "out")
    card = converted_card(source=tmp_path / "s.pth", sha256="0" * 64, form="full", backbone="swin-t", init="imp",
                          meta={}, dropped={}, max_diff={"sota": 0.0}, heads=HEADS)
    assert "| IMP+SEP | 81.53 | 94.64 | 57.91 | 78.03 |" in card and "lr 6e-5" in card


@pytest.mark.parametrize("content", [b"hello\n", bytes(range(256)) * 4, b"PK\x03\x04truncated zip"],
                         ids=["text", "random", "truncated-zip"])
def test_a_broken_download_is_one_line_exit_2(tmp_path, capsys, content):
    """A truncated or wrong file: the safe loader names it, whatever torch raised (no traceback)."""
    ckpt = tmp_path / "last_resnet50_upernet_pretrn_model.pth"
    ckpt.write_bytes(content)
    assert main(["convert-sep", str(ckpt), "--backbone", "resnet50", "--to", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"samrs convert-sep: error: {ckpt}: not a PyTorch checkpoint") and "\n" not in err
    assert "weights_only" not in err and not (tmp_path / "out").exists()
