"""SEP, exported and fine-tuned model folders carry an image processor that preprocesses as we do.

``AutoImageProcessor.from_pretrained(folder)`` must give the pixels our training/evaluation
transform gives (``/255``, the model's mean/std, no resize, labels kept), and
``pipeline("image-segmentation", model=folder)`` must run the exported / fine-tuned UperNet on
them and name the masks with the model's classes.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation, UperNetForSemanticSegmentation, pipeline

from samrs_hf.sep import SEPConfig, SEPForSemanticSegmentation
from samrs_hf.sep.data import to_tensor

pytestmark = pytest.mark.usefixtures("torch_one_thread")

MEAN, STD = (0.30, 0.40, 0.50), (0.20, 0.25, 0.30)  # not ImageNet's: the folder must carry the model's own
SOTA = ["ship", "plane", "harbor"]


def ours(image: np.ndarray, mean, std) -> torch.Tensor:
    """The package's evaluation transform (as CropDataset / center_crop feed the model)."""
    return to_tensor(np.asarray(image, dtype=np.float32) / 255.0, mean, std)


def processed(folder, image):
    return AutoImageProcessor.from_pretrained(folder)(image, return_tensors="pt")["pixel_values"]


def check_pipeline(folder, image: np.ndarray, pixel_values: torch.Tensor, names):
    """The pipeline's masks are exactly the model's argmax on our pixels, one per class, named."""
    model = AutoModelForSemanticSegmentation.from_pretrained(folder).eval()
    with torch.no_grad():
        expected = model(pixel_values=pixel_values[None]).logits.argmax(1)[0].numpy()
    out = pipeline("image-segmentation", model=str(folder), device="cpu")(Image.fromarray(image))
    present = sorted(np.unique(expected).tolist())
    assert len(present) >= 2  # random weights still predict several classes: a meaningful comparison
    assert [o["label"] for o in out] == [names[i] for i in present]
    for o, i in zip(out, present):
        mask = np.asarray(o["mask"])
        assert mask.shape == image.shape[:2]
        np.testing.assert_array_equal(mask > 0, expected == i)


@pytest.fixture(scope="module")
def sep():
    torch.manual_seed(0)
    config = SEPConfig(heads={"sota": 3, "sior": 2}, head_labels={"sota": SOTA, "sior": ["bridge", "dam"]},
                       hidden_size=8, image_mean=MEAN, image_std=STD)
    model = SEPForSemanticSegmentation(config).eval()
    # Freshly initialised heads are near zero and predict one class; unit-scale ones predict several.
    torch.nn.init.normal_(model.heads["sota"].weight, generator=torch.Generator().manual_seed(0))
    return model


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)  # odd, non-square


def test_sep_folder_and_export_give_our_pixels_without_resize_or_label_reduction(sep, image, tmp_path):
    sep.save_pretrained(tmp_path / "sep")
    sep.export("sota", tmp_path / "sota")
    labels = np.zeros(image.shape[:2], np.uint8)
    labels[:10] = 2
    labels[-5:] = 255
    for folder in (tmp_path / "sep", tmp_path / "sota"):
        proc = AutoImageProcessor.from_pretrained(folder)
        batch = proc(image, segmentation_maps=Image.fromarray(labels), return_tensors="pt")
        assert batch["pixel_values"].shape == (1, 3, 37, 53)
        torch.testing.assert_close(batch["pixel_values"][0], ours(image, MEAN, STD), atol=1e-6, rtol=0)
        np.testing.assert_array_equal(batch["labels"][0].numpy(), labels)  # 0 stays class 0, 255 stays ignored


def test_pipeline_on_export_returns_the_models_named_masks(sep, image, tmp_path):
    folder = sep.export("sota", tmp_path / "sota")
    check_pipeline(folder, image, ours(image, MEAN, STD), SOTA)


def test_finetune_output_folder_preprocesses_as_finetuning(tmp_path):
    from samrs_hf.sep.evaluation import IMAGENET_MEAN, IMAGENET_STD
    from samrs_hf.sep.finetune_data import POTSDAM_CLASSES, CropDataset, load_task
    from samrs_hf.sep.finetune import FinetuneArgs, run_finetune

    root = tmp_path / "potsdam"
    root.mkdir()
    rng = np.random.default_rng(4)
    for tile in ("2_10", "2_13"):  # one train tile, one test tile: one 512 crop each
        label = np.full((512, 512, 3), 255, np.uint8)  # impervious surface
        label[:, :200] = (0, 0, 255)  # building
        Image.fromarray(rng.integers(0, 256, (512, 512, 3), np.uint8)).save(root / f"top_potsdam_{tile}_RGB.tif")
        Image.fromarray(label).save(root / f"top_potsdam_{tile}_label.tif")
    # Fine-tuning normalises with ImageNet's mean/std (CropDataset), so the SEP model here has those.
    SEPForSemanticSegmentation(SEPConfig(hidden_size=8)).save_pretrained(tmp_path / "sep")
    out = tmp_path / "ft"
    run_finetune(FinetuneArgs(task="potsdam", root=str(root), init=str(tmp_path / "sep"), output_dir=str(out),
                              max_steps=1, batch_size=2, crop_size=32, num_workers=0, log_every=0, cpu=True))
    pairs, _ = load_task("potsdam", root, "test", out / "crops")
    crop = np.asarray(Image.open(pairs[0][0]).convert("RGB"))
    expected = CropDataset(pairs, 512, IMAGENET_MEAN, IMAGENET_STD, train=False)[0][0]  # what evaluation fed
    torch.testing.assert_close(processed(out, crop)[0], expected, atol=1e-6, rtol=0)
    # One training step leaves a near-constant prediction; a random classifier in the same folder (its
    # config and processor untouched) makes the mask comparison cover several classes.
    model = UperNetForSemanticSegmentation.from_pretrained(out)
    torch.nn.init.normal_(model.decode_head.classifier.weight, generator=torch.Generator().manual_seed(0))
    model.save_pretrained(out)
    check_pipeline(out, crop, expected, list(POTSDAM_CLASSES))
