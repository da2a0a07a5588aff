"""HQ-SAM's mask decoder forward, as segment-anything-hq's ``MaskDecoderHQ`` computes it, over
transformers' ``SamHQMaskDecoder`` modules and weights.

transformers 5.24's ``SamHQMaskDecoder.forward`` upscales the image embeddings from *before* its
two-way transformer (it unpacks the transformer's updated image tokens into an unused name), so its
masks differ from HQ-SAM's (scores agree; per-mask IoU ~0.85 on a random model). This forward uses
the transformer's output as the reference does; the parity test holds it to segment-anything-hq.
Without mask prompts (one dense embedding for all prompts) the two-way transformer shares the image
side across prompts as SAM's does (:func:`.fast_decoder.shared_two_way`; HQ-SAM's transformer is
SAM's).
"""

from __future__ import annotations

import torch

from .fast_decoder import default_group, shared_two_way


def hq_decode(decoder, image_embeddings, image_pe, sparse, dense, vit_features,
              shared_dense: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoderHQ.forward(multimask_output=False, hq_token_only=False)`` for N prompts of one
    image: ``image_embeddings`` (1, C, h, w), ``sparse`` (N, 1, T, C), ``dense`` (N or 1, C, h, w),
    ``vit_features`` (1, h, w, vit_dim); ``shared_dense``: ``dense`` is the same for every prompt.
    Returns (N, 1, 4h, 4w) logits (SAM's single mask + the HQ mask) and (N,) predicted IoU."""
    d = decoder
    vit = vit_features.permute(0, 3, 1, 2)
    compressed = d.compress_vit_conv2(d.activation(d.compress_vit_norm(d.compress_vit_conv1(vit))))
    encoded = d.encoder_conv2(d.activation(d.encoder_norm(d.encoder_conv1(image_embeddings))))
    hq_features = encoded + compressed  # once per image, as the reference does
    tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight, d.hq_token.weight], dim=0)
    last = d.num_mask_tokens  # the HQ token's index (d.num_mask_tokens counts it)
    c, h, w = image_embeddings.shape[1:]

    def finish(queries, keys):  # queries: the IoU, single-mask and HQ tokens
        src = keys.transpose(1, 2).reshape(-1, c, h, w)
        return _masks(d, src, queries[:, 1], queries[:, -1], hq_features), d.iou_prediction_head(queries[:, 0])[:, 0]

    if shared_dense and sparse is not None:
        return shared_two_way(d.transformer, image_embeddings, image_pe, dense[:1], tokens, sparse, [0, 1, last],
                              finish, default_group(d))
    n = sparse.shape[0] if sparse is not None else dense.shape[0]
    tokens = tokens.expand(n, 1, -1, -1)
    if sparse is not None:
        tokens = torch.cat([tokens, sparse.to(tokens.dtype)], dim=2)
    src = image_embeddings.expand(n, -1, -1, -1) + dense
    queries, keys = d.transformer(point_embeddings=tokens, image_embeddings=src,
                                  image_positional_embeddings=image_pe.expand(n, -1, -1, -1),
                                  attention_similarity=None)[:2]
    return finish(queries[:, 0, [0, 1, last]], keys.reshape(n, h * w, c))


def _masks(d, src, mask_token, hq_token, hq_features) -> torch.Tensor:
    """The upscaled image tokens (N, C, h, w) -> SAM's single mask plus the HQ mask, (N, 1, 4h, 4w)."""
    b = src.shape[0]
    up = d.activation(d.upscale_layer_norm(d.upscale_conv1(src)))
    up = d.activation(d.upscale_conv2(up))
    up_hq = d.mask_conv2(d.activation(d.mask_norm(d.mask_conv1(up)))) + hq_features
    hyper_sam = d.output_hypernetworks_mlps[0](mask_token)  # the single-mask token
    hyper_hq = d.hq_mask_mlp(hq_token)
    c_up, hh, ww = up.shape[1:]
    mask_sam = torch.bmm(hyper_sam[:, None], up.reshape(b, c_up, hh * ww))
    mask_hq = torch.bmm(hyper_hq[:, None], up_hq.reshape(b, c_up, hh * ww))
    return (mask_sam + mask_hq).reshape(b, 1, hh, ww)
