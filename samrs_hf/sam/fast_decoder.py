"""SAM's mask decoder for N prompts of ONE image without mask prompts, over transformers'
``SamMaskDecoder`` modules and weights.

transformers repeats the image embedding (plus the dense prompt embedding and the positional
encoding) once per prompt and runs the two-way transformer on N identical (4096 x 256) image token
sets. Without a mask prompt the dense embedding is the same ``no_mask_embed`` for every prompt, so
the image tokens stay identical until the first block's image->token attention updates them: this
forward projects the first block's token->image keys/values and image->token queries once per image
and broadcasts them (the token->image attention then runs all N prompts' queries as one sequence
against the one image), and adds the positional encoding once per block instead of twice. After
that the image tokens differ per prompt, but each prompt has only ~7 tokens: the later attentions
(and the first block's image->token values and output) never project the (HW x C) image tokens,
the few token vectors are carried into the image's C-wide space instead (:mod:`.decoder_attention`),
and the final attention runs only for the two tokens read out (IoU and the single mask). The
upscaling runs channels-last: ConvTranspose2d(k=2, s=2) is a per-pixel linear map, so the image
tokens feed it without a (N, C, h, w) transposed copy, its LayerNorm is one fused ``layer_norm``, and
the mask is the hypernetwork's dot product per sub-pixel, shuffled into place at the end (one
channel, not 32). After the shared projections the prompts run in small groups on CPU, so
each prompt's 4 MB image-side tensors stay in cache from one op to the next (the decoder is
memory-bound there; about 1.9x over one pass on a 35-prompt chunk). Same arithmetic as transformers'
forward up to float summation order (tests/test_decoder_fast.py: low-res logits within 1e-5 in fp32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cpu_workers import map_in_workers
from .decoder_attention import attend, heads, image_to_token, image_to_token_shared, merge, token_to_image


def _self_attention(layer, queries, point_embeddings, first: bool):
    """The block's token self-attention (small: N x T tokens) and its norm."""
    a = layer.self_attn
    if first:  # skip_first_layer_pe: the tokens replace themselves
        queries = attend(a, a.q_proj(queries), a.k_proj(queries), a.v_proj(queries))
    else:
        query = queries + point_embeddings
        queries = queries + attend(a, a.q_proj(query), a.k_proj(query), a.v_proj(queries))
    return layer.layer_norm1(queries)


def _tokens_mlp(layer, queries, attn_out):
    queries = layer.layer_norm2(queries + attn_out)
    return layer.layer_norm3(queries + layer.mlp(queries))


def _image_side(layer, image, image_pe):
    """The first block's projections of the image tokens (1, HW, C) shared by every prompt: the
    token->image keys and values (heads, (1, H, HW, d)), the image->token queries ((H, HW, d))."""
    keyed = image + image_pe
    a, b = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    h = a.num_attention_heads
    k, v = F.linear(keyed, a.k_proj.weight), F.linear(image, a.v_proj.weight)  # biases: decoder_attention
    return heads(k, h), heads(v, h), heads(b.q_proj(keyed), b.num_attention_heads)[0].contiguous()


def _shared_first_block(layer, queries, point_embeddings, image, projected):
    """The first two-way block with ``image`` (1, HW, C) shared by all N prompts' ``queries``
    (N, T, C), its projections ``projected`` (:func:`_image_side`); returns the tokens (N, T, C) and
    the now per-prompt image tokens (N, HW, C)."""
    n, t, _ = queries.shape
    k, v, q_image = projected
    queries = _self_attention(layer, queries, point_embeddings, first=layer.skip_first_layer_pe)
    a = layer.cross_attn_token_to_image  # all N*T queries as one sequence against the one image
    q = heads(a.q_proj(queries + point_embeddings).reshape(1, n * t, -1), a.num_attention_heads)
    out = F.scaled_dot_product_attention(q, k, v, scale=a.scaling)
    queries = _tokens_mlp(layer, queries, a.out_proj(merge(out) + a.v_proj.bias).reshape(n, t, -1))
    b = layer.cross_attn_image_to_token  # the queries projected once, the output on the token side
    keys = image_to_token_shared(b, q_image, image, queries + point_embeddings, queries)
    return queries, layer.layer_norm4(keys)


def _block(layer, queries, keys, point_embeddings, image_pe):
    """A later two-way block on per-prompt image tokens ``keys`` (N, HW, C), whose projections the
    few tokens replace (:mod:`.decoder_attention`); the positional encoding broadcasts from one image
    and is added once, not once per attention."""
    queries = _self_attention(layer, queries, point_embeddings, first=layer.skip_first_layer_pe)
    keyed = keys + image_pe
    attn_out = token_to_image(layer.cross_attn_token_to_image, queries + point_embeddings, keyed, keys)
    queries = _tokens_mlp(layer, queries, attn_out)
    keys = image_to_token(layer.cross_attn_image_to_token, keyed, keys, queries + point_embeddings, queries)
    return queries, layer.layer_norm4(keys)


def default_group(decoder) -> int:
    """Prompts run together after the shared projections: 2 on CPU, so each prompt's (HW x C)
    tensors stay in cache from one op to the next; elsewhere all of a chunk (0)."""
    return 2 if decoder.iou_token.weight.device.type == "cpu" else 0


def shared_two_way(transformer, image_embeddings, image_pe, dense, tokens, sparse, used: list[int], finish,
                   group: int = 0):
    """The two-way transformer for N prompts of one image sharing ``dense`` (1, C, h, w): the output
    ``tokens`` (K, C) plus each prompt's ``sparse`` (N, 1, T', C) as queries. Per group of prompts,
    ``finish(queries, keys)`` gets the tokens listed in ``used`` after the final attention (N', U, C)
    and the image tokens (N', HW, C), and returns a tuple of tensors; returns those, concatenated.
    On CPU with ``group`` the groups run in single-threaded workers (:mod:`.cpu_workers`)."""
    image = (image_embeddings + dense).flatten(2).transpose(1, 2)  # (1, HW, C)
    pe = image_pe.flatten(2).transpose(1, 2).to(image.dtype)
    projected = _image_side(transformer.layers[0], image, pe)
    n = sparse.shape[0]
    step = group or n

    def run(i):
        part = sparse[i : i + step, 0].to(tokens.dtype)
        point_embeddings = torch.cat([tokens.expand(len(part), -1, -1), part], dim=1)
        queries, keys = _shared_first_block(transformer.layers[0], point_embeddings, point_embeddings, image,
                                            projected)
        for layer in transformer.layers[1:]:
            queries, keys = _block(layer, queries, keys, point_embeddings, pe)
        # the final attention only for the tokens read out: queries attend independently
        f = transformer.final_attn_token_to_image
        attn_out = token_to_image(f, (queries + point_embeddings)[:, used], keys + pe, keys)
        return finish(transformer.layer_norm_final_attn(queries[:, used] + attn_out), keys)

    starts = list(range(0, n, step))
    # CPU groups (small ops) run in single-threaded workers: robust to a shared CPU (.cpu_workers)
    parts = map_in_workers(run, starts) if group and image.device.type == "cpu" else [run(i) for i in starts]
    return tuple(torch.cat(outs) for outs in zip(*parts))


class SharedImageDecoder:
    """``SamMaskDecoder.forward(multimask_output=False)`` for N prompts of one image whose dense
    prompt embedding is the same for all (no mask prompt). Holds transformers' modules, not copies."""

    def __init__(self, decoder, group: int | None = None):
        """``group``: prompts run together after the shared projections (:func:`default_group`)."""
        self.decoder = decoder
        self.group = group if group is not None else default_group(decoder)

    def __call__(self, image_embeddings, image_pe, sparse, dense):
        """``image_embeddings``, ``image_pe`` and ``dense``: (1, C, h, w); ``sparse``: (N, 1, T', C).
        Returns (N, 1, 4h, 4w) low-res logits and (N,) predicted IoU."""
        d = self.decoder
        hw = image_embeddings.shape[-2:]
        tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight], dim=0)

        def finish(queries, keys):  # queries: the IoU token and the single-mask token
            hyper = d.output_hypernetworks_mlps[0](queries[:, 1])  # (N, C/8)
            return self._upscaled_mask(keys, hyper, *hw), d.iou_prediction_head(queries[:, 0])[:, 0]

        return shared_two_way(d.transformer, image_embeddings, image_pe, dense, tokens, sparse, [0, 1], finish,
                              self.group)

    def _upscaled_mask(self, keys, hyper, h: int, w: int) -> torch.Tensor:
        """upscale_conv1 -> LayerNorm -> GELU -> upscale_conv2 -> GELU -> hypernetwork dot product,
        channels-last: (N, HW, C) tokens -> (N, 1, 4h, 4w) logits."""
        d = self.decoder
        up1, up2, norm = d.upscale_conv1, d.upscale_conv2, d.upscale_layer_norm
        n, c4 = keys.shape[0], up1.out_channels
        # ConvTranspose2d(k=2, s=2) weight (in, out, 2, 2) -> a per-pixel linear map to (ky, kx, out)
        w1, w2 = (m.weight.permute(0, 2, 3, 1).flatten(1) for m in (up1, up2))
        x = torch.addmm(up1.bias.repeat(4), keys.flatten(0, 1), w1)  # (N*HW, 4*C/4)
        x = d.activation(F.layer_norm(x.view(-1, 4, c4), (c4,), norm.weight, norm.bias, norm.eps))
        x = d.activation(torch.addmm(up2.bias.repeat(4), x.view(-1, c4), w2))
        x = x.view(n, h * w * 16, -1)  # (N, pixels as (y, x, ky, kx, ky2, kx2), C/8)
        mask = torch.bmm(x, hyper.unsqueeze(2)).view(n, h, w, 2, 2, 2, 2)
        return mask.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, 1, 4 * h, 4 * w)
