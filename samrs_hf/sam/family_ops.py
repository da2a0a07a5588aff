"""Per-generation steps of the labelling engine: image in, encoder features, prompts to low-res logits,
logits to the image's size. :class:`~samrs_hf.sam.engine.SamLabeler` keeps one interface (prompts in,
masks + scores + RLE/gray out, batched encode, chunked decode) and calls these for the model's family.

Each mirrors its family's reference predictor with ``multimask_output=False``:

* **SAM** (segment-anything ``SamPredictor``): longest side to 1024, pad; logits upsampled to 1024,
  cropped, resized to the image.
* **HQ-SAM** (segment-anything-hq ``SamPredictor``, ``hq_token_only=False``): as SAM; the decoder also
  reads the first global ViT block's features and returns SAM's single mask logits plus the HQ
  token's (:mod:`.hq_decoder`: transformers' own forward departs from the reference).
* **SAM 2.1 / SAM 3 tracker / EdgeTAM** (``SAM2ImagePredictor`` / sam3's ``predict_inst``):
  image stretched to the square input (bilinear, antialiased, on 0..1 pixels), the encoder's two
  high-resolution levels feed the decoder, the single mask falls back to the best of the three
  multimask outputs when unstable (the decoder's ``dynamic_multimask_via_stability``), and the
  256x256 logits are resized straight to the image. SAM 3 resizes the image in uint8 and fills small
  holes of its 288x288 logits first (:class:`Sam3Ops`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .families import Family, family_of
from .fast_decoder import SharedImageDecoder
from .hq_decoder import hq_decode
from .mask_holes import fill_small_holes
from .resize import ResizeLongestSide

PIXEL_MEAN = (123.675, 116.28, 103.53)  # segment-anything's constants (ImageNet's, on 0..255 pixels)
PIXEL_STD = (58.395, 57.12, 57.375)
SAM3_MAX_HOLE_AREA = 256  # SAM3InteractiveImagePredictor's max_hole_area (low-res pixels)


class SamOps:
    """SAM and HQ-SAM: ResizeLongestSide + zero padding, ViT features."""

    square = False

    def __init__(self, model, family: Family, device, dtype):
        self.model, self.family, self.dtype = model, family, dtype
        self.image_size = int(model.config.prompt_encoder_config.image_size)
        self.transform = ResizeLongestSide(self.image_size)
        self.hq = family.name == "sam_hq"
        self.mean = torch.tensor(PIXEL_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(PIXEL_STD, device=device).view(1, 3, 1, 1)
        with torch.no_grad():
            self.image_pe = model.get_image_wide_positional_embeddings().to(dtype)
        # SAM without mask prompts: the first block's image-side projections once per image
        self.shared_decoder = None if self.hq or family.square_input else SharedImageDecoder(model.mask_decoder)

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        return self.transform.shape(h, w)

    def to_input(self, x: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
        """(1, 3, h, w) uint8 -> normalised, padded (1, 3, S, S) float32."""
        x = self.transform.apply_image_torch(x, new_size)
        x = (x.float() - self.mean) / self.std
        return F.pad(x, (0, self.image_size - new_size[1], 0, self.image_size - new_size[0]))

    def encode(self, encoder, batch: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        out = encoder(batch)
        if self.hq:  # HQ-SAM's decoder reads the first global block's tokens
            return out.last_hidden_state, (out.intermediate_embeddings[0],)
        return out.last_hidden_state, ()

    def decode(self, emb, features, sparse, dense, shared_dense: bool = False):
        """(N, 1, 256, 256) low-res logits and (N,) predicted IoU, one mask per prompt.
        ``shared_dense``: ``dense`` is the same for every prompt (no mask prompt)."""
        if self.hq:
            return hq_decode(self.model.mask_decoder, emb, self.image_pe, sparse, dense, features[0], shared_dense)
        if shared_dense and sparse is not None and self.shared_decoder is not None:
            return self.shared_decoder(emb, self.image_pe, sparse, dense[:1])
        n = dense.shape[0]
        low_res, iou = self.model.mask_decoder(
            image_embeddings=emb.expand(n, -1, -1, -1),
            image_positional_embeddings=self.image_pe.expand(n, -1, -1, -1),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
        )
        return low_res[:, 0], iou[:, 0, 0]

    def postprocess(self, low_res: torch.Tensor, orig, inp) -> torch.Tensor:
        """sam.postprocess_masks: (N,1,256,256) logits -> (N,1,H,W) logits.

        The upsample to the padded square is cropped to the image right after, so only the low-res
        rows/columns the crop reads are upsampled: at a fixed integer factor f, output row i reads
        rows floor((i + 0.5) / f - 0.5) and the next, all below ceil(inp / f) + 1; the same scale
        (1 / f) and taps as the full upsample, so the same values, bit for bit."""
        lh, lw = low_res.shape[-2:]
        fy, fx = self.image_size // lh, self.image_size // lw
        if fy * lh == fx * lw == self.image_size:
            rows, cols = min(lh, -(-inp[0] // fy) + 1), min(lw, -(-inp[1] // fx) + 1)
            x = F.interpolate(low_res[..., :rows, :cols], scale_factor=(fy, fx), mode="bilinear",
                              align_corners=False, recompute_scale_factor=False)
        else:
            x = F.interpolate(low_res, (self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = x[..., : inp[0], : inp[1]]
        if tuple(orig) == tuple(inp):  # same-size bilinear (align_corners=False) is the identity
            return x
        return F.interpolate(x, orig, mode="bilinear", align_corners=False)


class Sam2Ops(SamOps):
    """The SAM 2 lineage (SAM 2.1, SAM 3's tracker, EdgeTAM): square input, multi-level features."""

    square = True

    def __init__(self, model, family: Family, device, dtype):
        super().__init__(model, family, device, dtype)
        # SAM2Transforms: ToTensor (0..1), Resize, Normalize with the family's statistics
        self.mean = torch.tensor(family.pixel_mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(family.pixel_std, device=device).view(1, 3, 1, 1)
        self.sizes = [tuple(s) for s in model.config.vision_config.backbone_feature_sizes]

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        return self.image_size, self.image_size

    def to_input(self, x: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
        x = x.float() / 255.0
        x = F.interpolate(x, new_size, mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def encode(self, encoder, batch: torch.Tensor):
        """Sam2Model.get_image_embeddings, through the (maybe compiled) vision encoder."""
        b = batch.shape[0]
        # SAM 3's neck may carry a 0.5x level the tracker never reads (the reference's scalp=1):
        # no_mem_embed goes on the lowest level the decoder uses, as the reference adds it
        levels = list(encoder(batch).fpn_hidden_states)[: len(self.sizes)]
        levels[0] = self.model.mask_decoder.conv_s0(levels[0])
        levels[1] = self.model.mask_decoder.conv_s1(levels[1])
        levels[-1] = levels[-1] + self.model.no_memory_embedding.view(1, -1, 1, 1).to(levels[-1].dtype)
        levels = [lv.reshape(b, -1, *size) for lv, size in zip(levels, self.sizes)]
        return levels[-1], tuple(levels[:-1])

    def decode(self, emb, features, sparse, dense, shared_dense: bool = False):
        # One prompt per batch row, like SAM: a mask prompt's dense embedding is per prompt. The
        # high-resolution levels stay one image and broadcast in the decoder's additions.
        n = dense.shape[0]
        masks, iou, _, _ = self.model.mask_decoder(
            image_embeddings=emb.expand(n, -1, -1, -1), image_positional_embeddings=self.image_pe.expand(n, -1, -1, -1),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False,
            high_resolution_features=list(features),
        )
        return masks[:, 0], iou[:, 0, 0]

    def postprocess(self, low_res: torch.Tensor, orig, inp) -> torch.Tensor:
        """SAM2Transforms.postprocess_masks (no hole filling): straight to the image's size."""
        return F.interpolate(low_res, orig, mode="bilinear", align_corners=False)


class Sam3Ops(Sam2Ops):
    """SAM 3's tracker as sam3 runs box/point prompts (``Sam3Processor.set_image`` + ``predict_inst``):
    the image resized to 1008 in uint8 (antialiased, rounded, then scaled to 0..1), and low-res holes
    of up to :data:`SAM3_MAX_HOLE_AREA` pixels filled before the resize to the image."""

    def to_input(self, x: torch.Tensor, new_size: tuple[int, int]) -> torch.Tensor:
        """torchvision's v2 ``Resize`` of a uint8 image: native uint8 on the CPU, float then rounded
        elsewhere."""
        if x.device.type == "cpu":
            x = F.interpolate(x, new_size, mode="bilinear", align_corners=False, antialias=True)
        else:
            x = F.interpolate(x.float(), new_size, mode="bilinear", align_corners=False, antialias=True).round_()
        return (x.float() / 255.0 - self.mean) / self.std

    def postprocess(self, low_res: torch.Tensor, orig, inp) -> torch.Tensor:
        return super().postprocess(fill_small_holes(low_res, SAM3_MAX_HOLE_AREA), orig, inp)


def ops_for(model, device, dtype) -> SamOps:
    family = family_of(model)
    cls = Sam3Ops if family.name == "sam3" else Sam2Ops if family.square_input else SamOps
    return cls(model, family, device, dtype)
