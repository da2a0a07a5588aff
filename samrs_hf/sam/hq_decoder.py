"""HQ-SAM's mask decoder forward, as segment-anything-hq's ``MaskDecoderHQ`` computes it, over
transformers' ``SamHQMaskDecoder`` modules and weights.

transformers 5.24's ``SamHQMaskDecoder.forward`` upscales the image embeddings from *before* its
two-way transformer (it unpacks the transformer's updated image tokens into an unused name), so its
masks differ from HQ-SAM's (scores agree; per-mask IoU ~0.85 on a random model). This forward uses
the transformer's output as the reference does; the parity test holds it to segment-anything-hq.
"""

from __future__ import annotations

import torch


def hq_decode(decoder, image_embeddings, image_pe, sparse, dense, vit_features) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoderHQ.forward(multimask_output=False, hq_token_only=False)`` for N prompts of one
    image: ``image_embeddings`` (1, C, h, w), ``sparse`` (N, 1, T, C), ``dense`` (N or 1, C, h, w),
    ``vit_features`` (1, h, w, vit_dim). Returns (N, 1, 4h, 4w) logits (SAM's single mask + the HQ
    mask) and (N,) predicted IoU."""
    n = sparse.shape[0] if sparse is not None else dense.shape[0]
    d = decoder
    vit = vit_features.permute(0, 3, 1, 2)
    compressed = d.compress_vit_conv2(d.activation(d.compress_vit_norm(d.compress_vit_conv1(vit))))
    encoded = d.encoder_conv2(d.activation(d.encoder_norm(d.encoder_conv1(image_embeddings))))
    hq_features = encoded + compressed  # once per image, as the reference does
    tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight, d.hq_token.weight], dim=0)
    tokens = tokens.expand(n, 1, -1, -1)
    if sparse is not None:
        tokens = torch.cat([tokens, sparse.to(tokens.dtype)], dim=2)
    src = image_embeddings.expand(n, -1, -1, -1) + dense
    b, c, h, w = src.shape
    queries, keys = d.transformer(point_embeddings=tokens, image_embeddings=src,
                                  image_positional_embeddings=image_pe.expand(n, -1, -1, -1),
                                  attention_similarity=None)[:2]
    iou_token_out = queries[:, 0, 0]
    mask_tokens_out = queries[:, 0, 1 : 1 + d.num_mask_tokens]
    src = keys.reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w)
    up = d.activation(d.upscale_layer_norm(d.upscale_conv1(src)))
    up = d.activation(d.upscale_conv2(up))
    up_hq = d.mask_conv2(d.activation(d.mask_norm(d.mask_conv1(up)))) + hq_features
    last = d.num_mask_tokens - 1
    hyper_sam = d.output_hypernetworks_mlps[0](mask_tokens_out[:, 0])  # the single-mask token
    hyper_hq = d.hq_mask_mlp(mask_tokens_out[:, last])
    c_up, hh, ww = up.shape[1:]
    mask_sam = torch.bmm(hyper_sam[:, None], up.reshape(b, c_up, hh * ww))
    mask_hq = torch.bmm(hyper_hq[:, None], up_hq.reshape(b, c_up, hh * ww))
    iou = d.iou_prediction_head(iou_token_out)[:, 0]
    return (mask_sam + mask_hq).reshape(b, 1, hh, ww), iou
