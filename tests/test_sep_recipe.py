"""SEP pre-training defaults follow the authors' pre-training code (issue #21): each default against a hand
computation — gradient clipping, parameter groups, ResNet's lr scaling, floored per-subset batches, per-subset
vs collective forward, augmentation probabilities, the validation schedule with ``best/``."""

import json
import logging

import numpy as np
import pytest
import torch
from torch import nn

from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation, table8_defaults, tiny_backbone_config
from samrs_hf.sep.augmentation import (PHOTOMETRIC_P, PHOTOMETRIC_WEIGHTS, SCALE_RANGE, AugmentPlan, augment,
                                       draw_plan)
from samrs_hf.sep.data import proportional_sizes
from samrs_hf.sep.options import parse_eval_schedule
from samrs_hf.sep.param_groups import layer_id, param_groups
from samrs_hf.sep.pretrain import SEPTrainer, TrainArgs
from samrs_hf.sep.training import build_optimizer, optimizer_step
from support_sep import sep_subsets, small_args

OFFICIAL = {"sota": 17480, "sior": 11725, "fast": 64147}  # training images of the authors' run

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return sep_subsets(tmp_path_factory.mktemp("sep-recipe"))




# -- 1. gradient clipping -----------------------------------------------------------------------------
def test_gradients_are_clipped_to_norm_5_by_default():
    from accelerate import Accelerator

    assert TrainArgs.__dataclass_fields__["max_grad_norm"].default == 5.0

    def norm_at_update(max_grad_norm):
        torch.manual_seed(0)
        model = nn.Linear(4, 3)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        seen = []
        optimizer.register_step_pre_hook(lambda opt, *_: seen.append(float(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])))))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        x = torch.full((2, 4), 100.0)

        def loss_fn(batch):
            loss = (model(batch) ** 2).sum()
            return loss, loss.detach().reshape(1)

        optimizer_step(Accelerator(cpu=True), model, optimizer, scheduler, [x], loss_fn, 1, "test", max_grad_norm)
        return seen[0]

    assert norm_at_update(0.0) > 100          # unclipped: far above 5
    assert norm_at_update(5.0) == pytest.approx(5.0, rel=1e-5)
    with pytest.raises(ValueError, match="--max-grad-norm must be non-negative"):
        TrainArgs(datasets={"sota": "x"}, output_dir="o", max_grad_norm=-1)


# -- 2. parameter groups ------------------------------------------------------------------------------
def _model(backbone_config) -> SEPForSemanticSegmentation:
    return SEPForSemanticSegmentation(SEPConfig(backbone_config=backbone_config, heads={"sota": 3}, hidden_size=8))


def test_swin_groups_no_decay_on_norms_position_tables_and_embeddings():
    from transformers import SwinConfig

    model = _model(SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=64,
                              use_absolute_embeddings=True, out_features=["stage1", "stage2", "stage3", "stage4"]))
    groups, summary = param_groups(model, "swin", 6e-5, 0.01)
    names = dict((id(p), n) for n, p in model.named_parameters())
    decay = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in groups}
    expected = {n for n, _ in model.named_parameters() if n.startswith("backbone.") and (
        "norm" in n or "relative_position_bias_table" in n or "position_embeddings" in n)}
    assert decay[0.0] == expected == set(summary["no_decay"])
    assert "backbone.swin.embeddings.position_embeddings" in expected        # Swin's absolute_pos_embed
    assert any(n.endswith("relative_position_bias_table") for n in expected)
    assert "backbone.swin.encoder.layers.0.blocks.0.layernorm_before.weight" in expected
    assert "backbone.hidden_states_norms.stage1.bias" in expected
    assert "backbone.swin.encoder.layers.0.blocks.0.attention.q_proj.bias" in decay[0.01]  # biases decay
    assert any("batch_norm" in n for n in decay[0.01])  # the decoder's BatchNorm ('bn' in mmseg) decays
    assert all(g["lr"] == 6e-5 for g in groups) and summary["rule"] == "no-decay-norms"
    with pytest.raises(ValueError, match="--layer-decay applies to ViT-like"):
        param_groups(model, "swin", 6e-5, 0.01, layer_decay=0.9)


def test_vit_groups_layer_decay_0_9_and_no_decay_on_1d_biases_positions():
    from transformers import VitDetConfig

    model = _model(VitDetConfig(hidden_size=8, num_hidden_layers=12, num_attention_heads=1, image_size=32,
                                pretrain_image_size=32, patch_size=16,
                                out_features=["stage4", "stage6", "stage8", "stage12"]))
    groups, summary = param_groups(model, "vitdet", 6e-5, 0.05)
    placed = {}
    for g in groups:
        for p in g["params"]:
            placed[id(p)] = (g["lr"], g["weight_decay"])
    by_name = {n: placed[id(p)] for n, p in model.named_parameters()}
    # BEiT's rule, 12 blocks: embeddings layer 0 -> 0.9^13, block i -> 0.9^(12 - i), the rest 1
    assert by_name["backbone.embeddings.projection.weight"] == (pytest.approx(6e-5 * 0.9 ** 13), 0.05)
    assert by_name["backbone.embeddings.position_embeddings"] == (pytest.approx(6e-5 * 0.9 ** 13), 0.0)
    assert by_name["backbone.encoder.layer.0.attention.qkv.weight"] == (pytest.approx(6e-5 * 0.9 ** 12), 0.05)
    assert by_name["backbone.encoder.layer.11.mlp.fc1.weight"] == (pytest.approx(6e-5 * 0.9), 0.05)
    assert by_name["backbone.encoder.layer.11.mlp.fc1.bias"] == (pytest.approx(6e-5 * 0.9), 0.0)
    assert by_name["backbone.encoder.layer.5.norm1.weight"][1] == 0.0
    assert by_name["heads.sota.weight"] == (6e-5, 0.05) and by_name["heads.sota.bias"] == (6e-5, 0.0)
    assert layer_id("backbone.encoder.layer.11.norm2.weight", 12) == 12 and layer_id("decode_head.x", 12) == 13
    assert summary["layer_decay"] == 0.9 and summary["rule"] == "layer-decay"
    # the schedule starts every group at its own lr
    _, scheduler = build_optimizer(model, 6e-5, 0.05, 0.0, 10, params=groups)
    assert scheduler.get_last_lr() == pytest.approx([g["lr"] for g in groups])
    flat, _ = param_groups(model, "vitdet", 6e-5, 0.05, layer_decay=1.0)
    assert {g["lr"] for g in flat} == {6e-5}


def test_resnet_is_one_plain_group():
    model = _model(tiny_backbone_config("resnet"))
    groups, summary = param_groups(model, "resnet", 1e-3, 0.05)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.05 and summary["no_decay"] == []
    assert len(groups[0]["params"]) == len(list(model.parameters()))


# -- 3. lr scaling ----------------------------------------------------------------------------------------
def test_resnet_lr_scales_with_the_global_batch():
    assert table8_defaults("resnet", batch_size=12 * 8)["lr"] == 1e-3   # 12 per GPU x 8 GPUs
    assert table8_defaults("resnet", batch_size=96)["lr"] == 1e-3
    assert table8_defaults("resnet", batch_size=12)["lr"] == pytest.approx(1.25e-4)
    assert table8_defaults("swin", batch_size=12)["lr"] == 6e-5        # only ResNet scales
    assert table8_defaults("resnet")["lr"] == 1e-3                      # fine-tuning: Table 8 as printed


# -- 4. per-subset batch sizes -----------------------------------------------------------------------------
def test_floor_rounding_gives_the_official_2_1_8():
    sizes = list(OFFICIAL.values())
    assert proportional_sizes(sizes, 12, "floor") == [2, 1, 8]          # 2.25, 1.51, 8.25: 11 images
    assert proportional_sizes(sizes, 12, "largest-remainder") == [2, 2, 8]
    assert proportional_sizes(sizes, 96, "floor") == [17, 12, 65]       # 17.98, 12.06, 65.97: 94 images
    assert proportional_sizes(sizes, 96, "largest-remainder") == [18, 12, 66]
    with pytest.raises(ValueError, match=r"floor gives subset\(s\) sior, fast no image"):
        proportional_sizes([1000, 1, 1], 3, "floor", ["sota", "sior", "fast"])
    with pytest.raises(ValueError, match="--batch-rounding must be one of"):
        proportional_sizes(sizes, 12, "round")


def test_trainer_uses_the_sizes_of_the_loaded_splits_and_the_official_defaults(data, tmp_path, caplog):
    defaults = TrainArgs(datasets=dict(data), output_dir=str(tmp_path / "d"))
    assert (defaults.batch_rounding, defaults.forward, defaults.eval_every) == ("floor", "per-subset", "official")
    with caplog.at_level(logging.WARNING, logger="samrs_hf.sep.pretrain"):
        trainer = SEPTrainer(small_args(data, tmp_path / "a", batch_size=4))
    assert trainer.lengths == [12, 16] and trainer.sizes == [1, 2]     # floor(4 * 12/28), floor(4 * 16/28)
    assert trainer.lr == pytest.approx(1e-3 * 4 / 96)                  # ResNet lr of a batch of 4
    # one sota image per micro-batch: BatchNorm cannot run per subset on it, so this run goes collective
    assert trainer.forward_mode == "collective" and "running collective" in caplog.text
    wide = SEPTrainer(small_args(data, tmp_path / "b", batch_size=8, batch_rounding="largest-remainder"))
    assert wide.sizes == [3, 5] and wide.forward_mode == "per-subset"


# -- 5. forward per subset vs collective -----------------------------------------------------------------
def test_per_subset_and_collective_forward_agree_without_batchnorm():
    torch.manual_seed(0)
    model = SEPForSemanticSegmentation(SEPConfig(backbone_config=tiny_backbone_config("convnext"),
                                                 heads={"a": 3, "b": 4}, hidden_size=8))
    x, y = torch.randn(5, 3, 32, 32), torch.randint(0, 3, (5, 32, 32))
    kwargs = dict(labels=y, subset=["a", "b"], subset_sizes=[2, 3])
    model.train()
    with_bn = [model(x, per_subset=p, **kwargs).head_losses for p in (True, False)]
    assert not torch.allclose(*with_bn)  # BatchNorm statistics per subset vs over the batch differ
    for name, module in list(model.named_modules()):
        for child, sub in list(module.named_children()):
            if isinstance(sub, nn.BatchNorm2d):
                setattr(module, child, nn.Identity())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    grads = []
    for per_subset in (True, False):
        model.zero_grad()
        out = model(x, per_subset=per_subset, **kwargs)
        out.loss.backward()
        grads.append((out.head_losses.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


# -- 6. augmentation ---------------------------------------------------------------------------------------
def test_augmentation_probabilities_over_many_seeds():
    plans = [draw_plan(np.random.default_rng(seed)) for seed in range(6000)]

    def rate(pred, among=plans):
        return sum(map(pred, among)) / len(among)

    assert rate(lambda p: p.scale != 1.0) == pytest.approx(0.5, abs=0.03)
    assert all(SCALE_RANGE[0] <= p.scale <= SCALE_RANGE[1] for p in plans)
    assert rate(lambda p: p.hflip) == pytest.approx(0.5, abs=0.03)
    assert rate(lambda p: p.vflip) == pytest.approx(0.5, abs=0.03)
    assert rate(lambda p: p.rot90 != 0) == pytest.approx(0.5 * 0.75, abs=0.03)  # RandomRotate90 p=0.5, k in 0..3
    changed = [p for p in plans if p.photometric]
    assert len(changed) / len(plans) == pytest.approx(PHOTOMETRIC_P, abs=0.03)
    total = sum(PHOTOMETRIC_WEIGHTS.values())
    for name, weight in PHOTOMETRIC_WEIGHTS.items():  # OneOf: in proportion to each transform's own p
        assert rate(lambda p, n=name: p.photometric == n, changed) == pytest.approx(weight / total, abs=0.05)
    jitter = [p.factors for p in changed if p.photometric == "color_jitter"]
    assert all(0.93 <= f[0] <= 1.07 and 0.93 <= f[1] <= 1.07 and 0.9 <= f[2] <= 1.1 and -0.1 <= f[3] <= 0.1
               for f in jitter)


def test_unscaled_unchanged_images_pass_through_and_small_ones_are_padded_around():
    from PIL import Image

    identity = AugmentPlan(1.0, False, False, 0, None)
    seed = next(s for s in range(1000) if draw_plan(np.random.default_rng(s)) == identity)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (32, 32, 3)).astype(np.uint8)
    labels = rng.integers(0, 4, (32, 32)).astype(np.uint8)
    img, lab = augment(Image.fromarray(pixels), Image.fromarray(labels, mode="L"), 32, np.random.default_rng(seed))
    assert np.array_equal(img, pixels.astype(np.float32) / 255) and np.array_equal(lab, labels)
    img, lab = augment(Image.fromarray(pixels[:20, :24]), Image.fromarray(labels[:20, :24], mode="L"), 32,
                       np.random.default_rng(seed))
    assert np.array_equal(lab[6:26, 4:28], labels[:20, :24])           # PadIfNeeded: centred, label 255
    assert (lab[:6] == 255).all() and (lab[26:] == 255).all() and (img[:6] == 0).all()


# -- 7. validation schedule and best/ ----------------------------------------------------------------------
def test_official_eval_schedule():
    official = parse_eval_schedule("official")
    due = [s for s in range(1, 80001) if official.due(s)]
    assert due == [*range(1000, 10001, 1000), *range(15000, 80001, 5000)]
    assert not any(parse_eval_schedule("0").due(s) for s in range(1, 100))
    assert [s for s in range(1, 10) if parse_eval_schedule("3").due(s)] == [3, 6, 9]
    assert [s for s in range(1, 12) if parse_eval_schedule("2:4,3").due(s)] == [2, 4, 6, 9]
    for bad in ("x", "-1", "2:4", "2,3"):
        with pytest.raises(ValueError, match="--eval-every must be"):
            parse_eval_schedule(bad)


def test_best_model_is_kept_beside_the_final_one(data, tmp_path):
    out = tmp_path / "run"
    args = small_args(data, out, eval_every="2", batch_size=8, batch_rounding="largest-remainder")
    result = SEPTrainer(args).train()
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in log if "val_mIoU" in r]
    assert [r["step"] for r in evals] == [2, 4]
    best = json.loads((out / "best" / "best_results.json").read_text())
    top = max(evals, key=lambda r: r["val_mIoU"])  # the first of equals, as only a better score replaces best/
    assert best["step"] == top["step"] and best["mIoU"] == pytest.approx(top["val_mIoU"])
    assert best["crop_size"] == args.crop_size == 32  # validated on the training crop size
    reloaded = SEPForSemanticSegmentation.from_pretrained(out / "best")
    assert set(reloaded.config.heads) == {"sota", "sior"}
    assert (out / "model.safetensors").is_file() and result["scores"]
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["max_grad_norm"] == 5.0 and run_config["subset_batch"] == {"sota": 3, "sior": 5}
    assert run_config["param_groups"]["rule"] == "plain" and run_config["forward"] == "per-subset"
    card = (out / "README.md").read_text()
    assert "| gradient clipping | total norm 5.0 |" in card and "| parameter groups | one group" in card
    assert "sota: 3, sior: 5 (largest-remainder" in card
    # --overwrite deletes the earlier run, best/ included, and nothing else
    (out / "notes.txt").write_text("mine")
    SEPTrainer(small_args(data, out, eval_every="0", overwrite=True, max_steps=1)).train()
    assert not (out / "best").exists() and (out / "notes.txt").read_text() == "mine"
