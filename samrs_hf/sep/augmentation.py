"""SEP training augmentation, as the SAMRS authors' pre-training code composes it with albumentations:

    RandomScale(scale_limit=(-0.5, 1.0), p=0.5)   a scale in [0.5, 2.0] for half the images, the rest unscaled
    PadIfNeeded(crop, image 0, label 255), RandomCrop(crop)
    HorizontalFlip(p=0.5), VerticalFlip(p=0.5), RandomRotate90(p=0.5)
    OneOf([RandomContrast(), RandomGamma(), RandomBrightness(), ColorJitter(0.07, 0.07, 0.1, 0.1)], p=0.3)

``OneOf`` applies one of its transforms with probability 0.3, chosen in proportion to their own ``p``
(0.5, 0.5, 0.5, 0.3). The random choices are drawn first (:func:`draw_plan`), so tests can count them.
Fine-tuning crops go through the same :func:`augment`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sources.classes import IGNORE_INDEX

SCALE_P = 0.5
SCALE_RANGE = (0.5, 2.0)
HFLIP_P = 0.5
VFLIP_P = 0.5
ROT90_P = 0.5
PHOTOMETRIC_P = 0.3
PHOTOMETRIC_WEIGHTS = {"contrast": 0.5, "gamma": 0.5, "brightness": 0.5, "color_jitter": 0.3}
CONTRAST_LIMIT = 0.2      # RandomContrast: pixels x (1 + U(-0.2, 0.2))
BRIGHTNESS_LIMIT = 0.2    # RandomBrightness: pixels + U(-0.2, 0.2) x 255
GAMMA_RANGE = (0.8, 1.2)  # RandomGamma(gamma_limit=(80, 120))
COLOR_JITTER = {"brightness": 0.07, "contrast": 0.07, "saturation": 0.1, "hue": 0.1}
AUGMENTATION = {"scale_p": SCALE_P, "scale_range": SCALE_RANGE, "hflip_p": HFLIP_P, "vflip_p": VFLIP_P,
                "rot90_p": ROT90_P, "photometric_p": PHOTOMETRIC_P, "photometric_weights": PHOTOMETRIC_WEIGHTS,
                "contrast_limit": CONTRAST_LIMIT, "brightness_limit": BRIGHTNESS_LIMIT, "gamma_range": GAMMA_RANGE,
                "color_jitter": COLOR_JITTER}


@dataclass(frozen=True)
class AugmentPlan:
    """The random choices for one example (crop offsets are drawn when the scaled size is known)."""

    scale: float
    hflip: bool
    vflip: bool
    rot90: int
    photometric: str | None
    factors: tuple = ()


def _photometric_factors(name: str, rng: np.random.Generator) -> tuple:
    if name == "contrast":
        return (1.0 + float(rng.uniform(-CONTRAST_LIMIT, CONTRAST_LIMIT)),)
    if name == "brightness":
        return (float(rng.uniform(-BRIGHTNESS_LIMIT, BRIGHTNESS_LIMIT)),)
    if name == "gamma":
        return (float(rng.uniform(*GAMMA_RANGE)),)
    j = COLOR_JITTER
    return (float(rng.uniform(1 - j["brightness"], 1 + j["brightness"])),
            float(rng.uniform(1 - j["contrast"], 1 + j["contrast"])),
            float(rng.uniform(1 - j["saturation"], 1 + j["saturation"])),
            float(rng.uniform(-j["hue"], j["hue"])), tuple(int(i) for i in rng.permutation(4)))


def draw_plan(rng: np.random.Generator) -> AugmentPlan:
    scale = float(rng.uniform(*SCALE_RANGE)) if rng.random() < SCALE_P else 1.0
    hflip, vflip = bool(rng.random() < HFLIP_P), bool(rng.random() < VFLIP_P)
    rot90 = int(rng.integers(0, 4)) if rng.random() < ROT90_P else 0
    photometric, factors = None, ()
    if rng.random() < PHOTOMETRIC_P:
        names, weights = list(PHOTOMETRIC_WEIGHTS), np.array(list(PHOTOMETRIC_WEIGHTS.values()))
        photometric = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        factors = _photometric_factors(photometric, rng)
    return AugmentPlan(scale, hflip, vflip, rot90, photometric, factors)


def _color_jitter(img: np.ndarray, factors: tuple) -> np.ndarray:
    """ColorJitter's four changes in its random order, through PIL (uint8 RGB in and out)."""
    from PIL import Image, ImageEnhance

    brightness, contrast, saturation, hue, order = factors
    pil = Image.fromarray(img)
    for k in order:
        if k == 0:
            pil = ImageEnhance.Brightness(pil).enhance(brightness)
        elif k == 1:
            pil = ImageEnhance.Contrast(pil).enhance(contrast)
        elif k == 2:
            pil = ImageEnhance.Color(pil).enhance(saturation)
        else:
            h, s, v = pil.convert("HSV").split()
            h = h.point(lambda x: int(x + round(hue * 255)) % 256)
            pil = Image.merge("HSV", (h, s, v)).convert("RGB")
    return np.asarray(pil)


def photometric(img: np.ndarray, name: str | None, factors: tuple) -> np.ndarray:
    """One of the four photometric changes on a uint8 RGB image (albumentations' uint8 formulas)."""
    if name is None:
        return img
    if name == "color_jitter":
        return _color_jitter(np.ascontiguousarray(img), factors)
    x = img.astype(np.float32)
    if name == "contrast":
        x = x * factors[0]
    elif name == "brightness":
        x = x + factors[0] * 255.0
    else:
        x = 255.0 * (x / 255.0) ** factors[0]
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _window(size: int, crop: int, rng: np.random.Generator, centre_pad: bool) -> tuple[int, int]:
    """(start in the scaled image, offset in the crop) along one axis."""
    if size >= crop:
        return int(rng.integers(0, size - crop + 1)), 0
    return 0, (crop - size) // 2 if centre_pad else 0


def _crop_window(w: int, h: int, scale: float, crop_size: int, rng: np.random.Generator, centre_pad: bool):
    """The crop of the image rescaled by ``scale``: (scaled size, window start, pad offset, window size)
    per axis, as ((sw, left, dx, cw), (sh, top, dy, ch)); draws the offsets (top first)."""
    sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
    top, dy = _window(sh, crop_size, rng, centre_pad)
    left, dx = _window(sw, crop_size, rng, centre_pad)
    return (sw, left, dx, min(crop_size, sw - left)), (sh, top, dy, min(crop_size, sh - top))


def _source_box(w: int, h: int, sw: int, sh: int, left: int, top: int, cw: int, ch: int) -> tuple:
    """The window's box in source pixels, rounded to float32 as PIL reads a resize box (the values PIL used
    before), so that the box moved by whole pixels into a region is exactly the same box."""
    box = (left * w / sw, top * h / sh, (left + cw) * w / sw, (top + ch) * h / sh)
    return tuple(float(v) for v in np.asarray(box, dtype=np.float32))


def scaled_crop(image, semantic, scale: float, crop_size: int, rng: np.random.Generator, centre_pad: bool = False):
    """Random ``crop_size`` window of the image rescaled by ``scale``, resampling only that window.

    Same result as resize-then-crop (bilinear image, nearest labels) without resizing whole
    SAMRS images up to 2x for a 224 crop. Windows larger than the scaled image are padded (image 0,
    labels 255): after it, or around it with ``centre_pad`` (albumentations' PadIfNeeded).
    """
    from PIL import Image

    w, h = image.size
    (sw, left, dx, cw), (sh, top, dy, ch) = _crop_window(w, h, scale, crop_size, rng, centre_pad)
    if scale == 1.0:
        img = np.asarray(image.convert("RGB"))[top:top + ch, left:left + cw]
        lab = np.asarray(semantic)[top:top + ch, left:left + cw]
    else:
        box = _source_box(w, h, sw, sh, left, top, cw, ch)
        img = np.asarray(image.convert("RGB").resize((cw, ch), Image.BILINEAR, box=box))
        lab = np.asarray(semantic.resize((cw, ch), Image.NEAREST, box=box))
    return crop_or_pad(img, lab, crop_size, -dy, -dx)


def _horizontal_first(w: int, h: int, out_w: int, out_h: int) -> bool:
    """Pillow >= 13's choice of resampling passes: vertical first when the height shrinks by more than twice
    what the width does (each pass rounds to 8 bits, so the order shows in the pixels)."""
    return not (h - out_h > 0 and h - out_h > (w - out_w) * 2)


def _same_pass_order(x: tuple, y: tuple) -> tuple:
    """A region ``(x0, x1)``, ``(y0, y1)`` of an image (``x``/``y``: start, end, image size, output size), grown
    where needed so that PIL resizes it in the order of passes it uses for the whole image."""
    (x0, x1, w, out_w), (y0, y1, h, out_h) = x, y
    whole = _horizontal_first(w, h, out_w, out_h)
    if whole == _horizontal_first(x1 - x0, y1 - y0, out_w, out_h):
        return (x0, x1), (y0, y1)
    if whole:  # wider, until the height shrinks at most twice what the width does (the whole width does)
        return _grow(x0, x1, w, out_w - (-(y1 - y0 - out_h) // 2)), (y0, y1)
    return (x0, x1), _grow(y0, y1, h, out_h + max(0, 2 * (x1 - x0 - out_w)) + 1)  # taller: as the whole image


def _grow(start: int, end: int, size: int, length: int) -> tuple[int, int]:
    """``[start, end)`` widened to ``length`` (at most ``size``) inside ``[0, size)``."""
    if end - start >= length:
        return start, end
    end = min(size, start + length)
    return max(0, end - length), end


def _nearest(start: float, end: float, size: int) -> np.ndarray:
    """The source indices PIL's ``resize(..., NEAREST, box)`` reads along one axis: its scale-only affine
    transform (``ImagingScaleAffine``), a double stepped from the box start, truncated."""
    step = float(np.float32(end) - np.float32(start)) / size  # PIL subtracts the float32 box values
    out, position = np.empty(size, dtype=np.intp), float(start) + step * 0.5
    for i in range(size):
        out[i] = int(position)
        position += step
    return out


def scaled_crop_array(image: np.ndarray, semantic: np.ndarray, scale: float, crop_size: int,
                      rng: np.random.Generator, centre_pad: bool = False):
    """:func:`scaled_crop` of uint8 arrays (HxWx3, HxW; e.g. memory-mapped decode-cache views) that reads
    only the source region the window needs: for a scale s about (crop/s)^2 pixels, plus the resampling
    filter's reach, which PIL then resizes with the box moved into the region (in the order of passes it
    takes for the whole image, :func:`_same_pass_order`); the labels are the source pixels PIL's
    nearest-neighbour resize picks (:func:`_nearest`). The crop the whole image gives, up to float rounding
    of the moved box at the last bit (rarely one level of a pixel)."""
    from PIL import Image

    h, w = semantic.shape
    (sw, left, dx, cw), (sh, top, dy, ch) = _crop_window(w, h, scale, crop_size, rng, centre_pad)
    if scale == 1.0:
        img, lab = image[top:top + ch, left:left + cw], semantic[top:top + ch, left:left + cw]
    else:
        box = _source_box(w, h, sw, sh, left, top, cw, ch)
        reach = int(np.ceil(max(1.0, w / sw, h / sh))) + 2  # bilinear support grows with the reduction
        x0, y0 = max(0, int(box[0]) - reach), max(0, int(box[1]) - reach)
        x1, y1 = min(w, int(np.ceil(box[2])) + reach), min(h, int(np.ceil(box[3])) + reach)
        (x0, x1), (y0, y1) = _same_pass_order((x0, x1, w, cw), (y0, y1, h, ch))
        moved = (box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0)
        img = np.asarray(Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
                         .resize((cw, ch), Image.BILINEAR, box=moved))
        lab = semantic[np.ix_(_nearest(box[1], box[3], ch), _nearest(box[0], box[2], cw))]
    return crop_or_pad(img, lab, crop_size, -dy, -dx)


def crop_or_pad(image: np.ndarray, labels: np.ndarray, size: int, top: int, left: int):
    """``size``x``size`` window at (top, left); parts outside the image are 0 pixels / 255 labels."""
    out_img = np.zeros((size, size, 3), dtype=image.dtype)
    out_lab = np.full((size, size), IGNORE_INDEX, dtype=labels.dtype)
    h, w = labels.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, h), min(left + size, w)
    if y1 > y0 and x1 > x0:
        out_img[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
        out_lab[y0 - top:y1 - top, x0 - left:x1 - left] = labels[y0:y1, x0:x1]
    return out_img, out_lab


def geometric(image, semantic, crop_size: int, rng: np.random.Generator):
    """The plan of the authors' transform and its uint8 geometric part (scale, pad + crop, flips, rot90):
    ``(plan, HxWx3 uint8, HxW uint8 labels)``. ``image``/``semantic`` are PIL images or uint8 arrays
    (:func:`scaled_crop_array`); both draw the same numbers in the same order."""
    plan = draw_plan(rng)
    crop = scaled_crop if hasattr(image, "convert") else scaled_crop_array
    img, lab = crop(image, semantic, plan.scale, crop_size, rng, centre_pad=True)
    if plan.hflip:
        img, lab = img[:, ::-1], lab[:, ::-1]
    if plan.vflip:
        img, lab = img[::-1], lab[::-1]
    img, lab = np.rot90(img, plan.rot90), np.rot90(lab, plan.rot90)
    return plan, np.ascontiguousarray(img), np.ascontiguousarray(lab)


def augment(image, semantic, crop_size: int, rng: np.random.Generator):
    """The authors' training transform (module docstring). ``image``/``semantic`` are PIL images (or uint8
    arrays); returns HxWx3 float32 in [0, 1] and HxW int64 labels."""
    plan, img, lab = geometric(image, semantic, crop_size, rng)
    img = photometric(img, plan.photometric, plan.factors)
    return (np.ascontiguousarray(img, dtype=np.float32) / 255.0,
            np.ascontiguousarray(lab, dtype=np.int64))


def center_crop(image, semantic, crop_size: int):
    """Validation: the central ``crop_size`` square; smaller sides are padded (255 labels)."""
    img = np.asarray(image.convert("RGB"))
    lab = np.asarray(semantic)
    h, w = lab.shape
    img, lab = crop_or_pad(img, lab, crop_size, (h - crop_size) // 2, (w - crop_size) // 2)
    return img.astype(np.float32) / 255.0, lab.astype(np.int64)
