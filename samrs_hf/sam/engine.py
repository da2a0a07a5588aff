"""SAM labelling engine: images + prompts in, boolean masks and SAM's predicted IoU out.

Reproduces ``segment_anything.SamPredictor`` (``multimask_output=False``) step by step, and each
other generation's reference predictor through its :mod:`.family_ops` steps, but
encodes images in batches, decodes all prompts of an image in memory-sized chunks instead of 20 at a
time, and upsamples/thresholds on the device. ``output="masks"`` brings boolean masks back to the
CPU; ``output="rle"`` brings back only COCO RLE run boundaries (and, given the labels, the painted
semantic map), a few KB instead of H*W bytes per mask.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import rle
from ..sources.classes import IGNORE_INDEX
from .family_ops import PIXEL_MEAN, PIXEL_STD, ops_for  # noqa: F401 (PIXEL_*: re-export)
from .loading import prepare_model
from .resize import ResizeLongestSide, preprocess_shape  # noqa: F401 (preprocess_shape: re-export)

log = logging.getLogger(__name__)

MASK_THRESHOLD = 0.0
CPU_POSTPROCESS_GROUP = 2  # masks upsampled + thresholded together on CPU (4 MB of float logits each)
OutOfMemoryError = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5
OUTPUTS = ("masks", "rle")


@dataclass
class MaskResult:
    masks: np.ndarray | None  # (N, H, W) bool at the image's own size; None with output="rle"
    scores: np.ndarray  # (N,) float32, SAM's predicted IoU
    rles: list[dict] | None = None  # output="rle": COCO RLE dicts (``size``, ``str`` counts)
    areas: np.ndarray | None = None  # output="rle": (N,) int64 mask pixels
    gray: np.ndarray | None = None  # given labels: (H, W) uint8, masks painted in order, 255 elsewhere


@dataclass
class ImageEmbeddings:
    """Encoder output of a batch of images, kept on the device for repeated decoding."""

    embeddings: torch.Tensor  # (B, C, h, w)
    original_sizes: list[tuple[int, int]]
    input_sizes: list[tuple[int, int]]
    features: tuple[torch.Tensor, ...] = ()  # (B, ...) each: HQ-SAM's ViT tokens, SAM 2's high-res levels

    def __len__(self) -> int:
        return len(self.original_sizes)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, OutOfMemoryError):
        return True
    msg = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


class SamLabeler:
    """Batched SamPredictor. The labeler owns ``model``: it moves and casts it (see prepare_model).

    ``max_masks_per_chunk=None`` sizes decoder chunks to free memory (CUDA) or a 2 GiB budget (CPU,
    deterministic so multi-process builds match); an out-of-memory halves the chunk and retries.
    """

    def __init__(
        self,
        model,
        *,
        device: Any = "cpu",
        dtype: torch.dtype = torch.float32,
        image_batch_size: int = 1,
        max_masks_per_chunk: int | None = None,
        compile: bool = False,
    ):
        self.device = torch.device(device)
        self.dtype = dtype
        self.image_batch_size = max(1, int(image_batch_size))
        if max_masks_per_chunk is not None and max_masks_per_chunk < 1:
            raise ValueError(f"max_masks_per_chunk must be >= 1 (None: sized to memory), got {max_masks_per_chunk}")
        self.max_masks_per_chunk = max_masks_per_chunk
        prepare_model(model, self.device, dtype)
        self.model = model
        self.ops = ops_for(model, self.device, dtype)  # the family's image, encoder and decoder steps
        self.family = self.ops.family.name
        self.square_input = self.ops.square  # mask prompts: make_prompts(..., square=True)
        self.image_size = self.ops.image_size
        self.transform = self.ops.transform
        self.mask_input_size = tuple(model.prompt_encoder.mask_input_size if hasattr(
            model.prompt_encoder, "mask_input_size") else (4 * self.image_size // 16,) * 2)
        self.decoder_hidden = int(model.config.mask_decoder_config.hidden_size)
        self._image_pe = self.ops.image_pe
        self._chunk_cap: int | None = None  # lowered for good after an out-of-memory
        # masks mode: chunks reach the host through two reused staging buffers (pinned on CUDA), so
        # no image allocates pinned memory and a chunk's copy overlaps the next chunk's compute.
        self._stage = self.device.type == "cuda"
        self._staging: list[torch.Tensor | None] = [None, None]
        # torch.compile fuses the encoder's norms/GELU/window reshapes and the decoder's elementwise
        # chains over (masks x 4096 x 256) tensors plus upsample + threshold (GPU). The first batches
        # compile; a second prompt count recompiles once with a dynamic count.
        self._encoder = torch.compile(model.vision_encoder) if compile else model.vision_encoder
        self._masks_from_prompts = torch.compile(self._decode_masks) if compile else self._decode_masks

    def prompt_frame(self) -> dict:
        """``make_prompts`` keywords that draw mask prompts in this model's input frame."""
        return {"target_length": self.image_size, "square": self.square_input, "mask_size": self.mask_input_size[0]}

    # ------------------------------------------------------------------ encoding
    def _to_input(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """The family's resize + normalize (+ pad), like its predictor's set_image, on the device."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        nh, nw = self.ops.input_size(h, w) if h and w else (h, w)
        if min(nh, nw) < 1:
            raise ValueError(f"a {h}x{w} image resizes to {nh}x{nw} for SAM's {self.image_size} input")
        # Decoded PIL images are read-only arrays; torch only reads them here, so no copy is needed.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device, non_blocking=True)
        x = self.ops.to_input(x.permute(2, 0, 1).unsqueeze(0), (nh, nw))
        return x.contiguous(), (h, w), (nh, nw)

    @torch.no_grad()
    def embed(self, images: list[np.ndarray]) -> ImageEmbeddings:
        """Encode images (in batches of ``image_batch_size``) once, for any number of decodes."""
        inputs = [self._to_input(im) for im in images]
        outs, feats, start = [], [], 0
        while start < len(inputs):
            batch = torch.cat([t for t, _, _ in inputs[start : start + self.image_batch_size]])
            try:
                emb, extra = self.ops.encode(self._encoder, batch.to(self.dtype))
            except (OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc) or self.image_batch_size == 1:
                    raise
                self.image_batch_size //= 2  # for good: later batches start at the size that fits
                log.warning("out of memory encoding %d images; image batch now %d", len(batch), self.image_batch_size)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            outs.append(emb)
            feats.append(extra)
            start += len(batch)
        return ImageEmbeddings(
            embeddings=torch.cat(outs) if outs else torch.empty(0),
            original_sizes=[o for _, o, _ in inputs],
            input_sizes=[s for _, _, s in inputs],
            features=tuple(torch.cat(level) for level in zip(*feats)),
        )

    # ------------------------------------------------------------------ decoding
    def _chunk_size(self, n: int, hw: tuple[int, int]) -> int:
        if self.max_masks_per_chunk is not None:
            size = self.max_masks_per_chunk
        else:
            size = self._memory_chunk(hw)
        if self._chunk_cap is not None:
            size = min(size, self._chunk_cap)
        return max(1, min(n, size))

    def _memory_chunk(self, hw: tuple[int, int]) -> int:
        """Masks per chunk from free memory: decoder activations plus the float upsampling buffers."""
        emb_tokens = (self.image_size // 16) ** 2
        elt = torch.finfo(self.dtype).bits // 8
        decoder = 12 * emb_tokens * self.decoder_hidden * elt + 3 * (4 * emb_tokens) * 4 * elt
        upsample = 4 * (self.image_size**2 + 2 * hw[0] * hw[1])
        per_mask = decoder + upsample
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = free * 0.5
        else:
            budget = 2 << 30
        return max(1, int(budget // per_mask))

    def _prompt_tensors(self, prompts, orig: tuple[int, int], inp: tuple[int, int]):
        def scale(a, shape):  # ResizeLongestSide.apply_coords: float64 scaling, then float32
            a = self.transform.apply_coords(np.asarray(a).reshape(shape), orig, inp)
            return torch.as_tensor(a, dtype=torch.float32, device=self.device)

        boxes = None if prompts.boxes is None else scale(
            np.asarray(prompts.boxes, dtype=np.float32), (-1, 2, 2)).reshape(-1, 1, 4)
        points = labels = None
        if prompts.points is not None:
            pts = np.asarray(prompts.points)
            points = scale(pts, pts.shape)[:, None]  # (N, 1, P, 2)
            labels = torch.as_tensor(np.asarray(prompts.point_labels), dtype=torch.int64, device=self.device)[:, None]
        masks = None
        if prompts.masks is not None:
            masks = torch.as_tensor(np.asarray(prompts.masks), dtype=torch.float32, device=self.device)
            if tuple(masks.shape[-2:]) != self.mask_input_size:
                raise ValueError(f"mask prompts of {tuple(masks.shape[-2:])} for a model taking "
                                 f"{self.mask_input_size} (make_prompts(..., target_length=labeler.image_size, "
                                 f"square=labeler.square_input))")
        return points, labels, boxes, masks

    def _decode_chunk(self, emb, points, labels, boxes, masks, orig, inp):
        """Low-res logits -> masks at the original size; returns (bool masks on device, scores).
        ``emb``: the image's embedding, or (embedding, the family's extra features)."""
        emb, feats = emb if isinstance(emb, tuple) else (emb, ())
        n = next(t.shape[0] for t in (points, boxes, masks) if t is not None)
        sparse, dense = self.model.prompt_encoder(
            input_points=points, input_labels=labels, input_boxes=boxes, input_masks=masks
        )
        if sparse is not None:
            sparse = sparse.to(self.dtype)
        dense = dense.to(self.dtype).expand(n, -1, -1, -1)
        return self._masks_from_prompts(emb, feats, sparse, dense, orig, inp, masks is None)

    def _decode_masks(self, emb, feats, sparse, dense, orig, inp, shared_dense: bool = False):
        """Decoder + upsampling + threshold: one function so ``compile`` fuses across all three.
        ``shared_dense`` (no mask prompts): the family may share image-side work across prompts."""
        low_res, iou = self.ops.decode(emb, feats, sparse, dense, shared_dense)
        low_res = low_res.float()
        if self.device.type != "cpu":
            return self.postprocess(low_res, orig, inp)[:, 0] > MASK_THRESHOLD, iou.float()
        # CPU: a few masks at a time, so each mask's float logits stay in cache until thresholded
        step = CPU_POSTPROCESS_GROUP
        masks = [self.postprocess(low_res[i : i + step], orig, inp)[:, 0] > MASK_THRESHOLD
                 for i in range(0, low_res.shape[0], step)]
        return torch.cat(masks) if masks else torch.zeros((0, *orig), dtype=torch.bool), iou.float()

    def postprocess(self, low_res: torch.Tensor, orig, inp) -> torch.Tensor:
        """The family's (N,1,256,256) logits -> (N,1,H,W) logits (sam.postprocess_masks for SAM)."""
        return self.ops.postprocess(low_res, orig, inp)

    @torch.no_grad()
    def decode(self, embeddings: ImageEmbeddings, index: int, prompts, output: str = "masks",
               labels=None) -> MaskResult:
        """Masks for all prompts of image ``index``; out-of-memory halves the chunk and retries.

        ``output="rle"`` returns ``rles`` and ``areas`` instead of ``masks``; ``labels`` (one class id
        per prompt) also returns ``gray``, painted on the device.
        """
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
        orig, inp = embeddings.original_sizes[index], embeddings.input_sizes[index]
        n = len(prompts)
        labels = None if labels is None else self._check_labels(labels, n)
        emb = embeddings.embeddings[index : index + 1]
        feats = tuple(f[index : index + 1] for f in embeddings.features)
        tensors = self._prompt_tensors(prompts, orig, inp) if n else ()
        host = np.empty((n, *orig), bool) if output == "masks" else None
        sink = _HostCopy(self, host) if output == "masks" else None
        runs: list[np.ndarray] = []
        scores: list[torch.Tensor] = []
        gray = None if labels is None else torch.full(orig, IGNORE_INDEX, dtype=torch.uint8, device=self.device)
        start, chunk = 0, self._chunk_size(n, orig) if n else 0
        while start < n:
            stop = min(n, start + chunk)
            part = [None if t is None else t[start:stop] for t in tensors]
            try:
                m, s = self._decode_chunk((emb, feats) if feats else emb, *part, orig, inp)
                chunk_runs = rle.mask_runs(m) if output == "rle" else None
            except (OutOfMemoryError, RuntimeError) as exc:
                if not is_oom(exc) or chunk == 1:
                    raise
                chunk = max(1, chunk // 2)
                self._chunk_cap = chunk
                log.warning("out of memory decoding %d masks; retrying with chunks of %d", stop - start, chunk)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            if gray is not None:  # in annotation order: the last mask wins
                for mask, label in zip(m, labels[start:stop]):
                    gray.masked_fill_(mask, label)
            if sink is not None:
                sink.put(m, start, stop)
            else:
                runs.extend(chunk_runs)
            scores.append(s)
            start = stop
        if sink is not None:
            sink.finish()
        score = torch.cat(scores).cpu().numpy() if scores else np.zeros((0,), np.float32)
        gray = None if gray is None else gray.cpu().numpy()
        if output == "masks":
            return MaskResult(host, score, gray=gray)
        return MaskResult(None, score, rles=rle.compress(runs, *orig), areas=rle.areas(runs), gray=gray)

    @staticmethod
    def _check_labels(labels, n: int) -> list[int]:
        labels = [int(v) for v in labels]
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} prompts")
        bad = [v for v in labels if not 0 <= v < IGNORE_INDEX]
        if bad:
            raise ValueError(f"label {bad[0]} does not fit a uint8 map (0..{IGNORE_INDEX - 1})")
        return labels

    def _staging_buffer(self, slot: int, numel: int) -> torch.Tensor:
        buf = self._staging[slot]
        if buf is None or buf.numel() < numel:
            self._staging[slot] = buf = torch.empty(numel, dtype=torch.bool, pin_memory=self.device.type == "cuda")
        return buf[:numel]

    # ------------------------------------------------------------------ whole images
    def label(self, images: list[np.ndarray], prompts: list, output: str = "masks",
              labels: list | None = None) -> list[MaskResult]:
        """``labels``: per image, one class id per prompt, to paint ``gray`` on the device."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompt batches")
        if labels is not None and len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} label lists")
        results = []
        for start in range(0, len(images), self.image_batch_size):
            batch = images[start : start + self.image_batch_size]
            emb = self.embed(batch)
            results.extend(
                self.decode(emb, i, prompts[start + i], output, None if labels is None else labels[start + i])
                for i in range(len(batch))
            )
        return results


class _HostCopy:
    """Chunks of device masks -> one host array.

    With staging (CUDA), chunk k goes to staging buffer k % 2 without blocking, and is copied into
    the result while chunk k + 1 computes; the result is plain (pageable) numpy memory, so earlier
    results hold no pinned memory.
    """

    def __init__(self, labeler: SamLabeler, host: np.ndarray):
        self.labeler, self.host = labeler, host
        self.slot = 0
        self.pending = None  # (event or None, staged chunk, start, stop)

    def put(self, masks: torch.Tensor, start: int, stop: int) -> None:
        if not self.labeler._stage:
            torch.from_numpy(self.host[start:stop]).copy_(masks)
            return
        staged = self.labeler._staging_buffer(self.slot, masks.numel()).view(masks.shape)
        cuda = masks.device.type == "cuda"
        staged.copy_(masks, non_blocking=cuda)
        event = None
        if cuda:
            event = torch.cuda.Event()
            event.record(torch.cuda.current_stream(masks.device))
        self.finish()  # the previous chunk, whose copy ran while this one computed
        self.pending = (event, staged, start, stop)
        self.slot ^= 1

    def finish(self) -> None:
        if self.pending is None:
            return
        event, staged, start, stop = self.pending
        if event is not None:
            event.synchronize()
        self.host[start:stop] = staged.numpy()
        self.pending = None
