"""MiniMax-M1: a hybrid lightning-attention / softmax-attention mixture-of-experts decoder.

Implements report section 2 (and MiniMax-01 section 2), layer for layer as transformers'
``MiniMaxForCausalLM`` (the parity oracle) so checkpoints move between the two:

- 7 lightning-attention layers then 1 softmax-attention layer, repeating (``cfg.layer_types``).
- Lightning attention: q, k, v = silu(qkv_proj(x)); per head h of H in layer l of L the decay is
  ``s = 2^(-8(h+1)/H) * (1 - l/(L-1+1e-5) + 1e-5)``, ``S_t = exp(-s) S_{t-1} + k_t^T v_t``,
  ``o_t = q_t S_t`` (no 1/sqrt(d), no RoPE); RMSNorm over all heads, times sigmoid(output_gate(x)),
  then out_proj. Computed by ``kernels.lightning_attn`` (prefill / training) and
  ``kernels.lightning_decode`` (one token against the recurrent state).
- Softmax attention with grouped-query heads and RoPE on the first ``rotary_dim`` dims of each head.
- Top-k mixture of experts (softmax router, top-k weights renormalised) with the Switch-style
  load-balancing loss times ``router_aux_loss_coef``.
- Post-norm residuals with DeepNorm-style factors: ``h = norm(x); x = alpha*h + beta*f(h)``.
- ``lm_head_fp32``: logits from an fp32 matmul, the report's fix (section 3.3) for the train /
  inference probability mismatch.

Padding: the mask zeroes q, k, v of padded positions, so a lightning state stays exactly zero through
left padding, and softmax layers never attend to padded keys; positions count real tokens only.
Right padding is fine for a single pass (training); a cache continued after right padding would
carry the pads' decay, so decoding pads on the left (``model.generation`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

import kernels
from kernels.lightning.naive import naive_recurrent_lightning_attn
from model.config import FULL, LINEAR, M1Config

LIGHTNING_NORM_EPS = 1e-6  # transformers' lightning RMSNorm uses its default eps, not rms_norm_eps


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def lightning_decay(layer_idx: int, num_layers: int, num_heads: int) -> torch.Tensor:
    """Decay rate s of each head ([H] fp32), computed as transformers does so the bits agree."""
    base = 1 / (2 ** (8 / num_heads))
    rate = base ** (torch.arange(num_heads) + 1)
    return rate * (1 - layer_idx / (num_layers - 1 + 1e-5) + 1e-5)


class LightningAttention(nn.Module):
    def __init__(self, cfg: M1Config, layer_idx: int) -> None:
        super().__init__()
        self.cfg = cfg
        H, D = cfg.num_attention_heads, cfg.head_dim
        self.qkv_proj = nn.Linear(cfg.hidden_size, 3 * H * D, bias=False)
        self.output_gate = nn.Linear(cfg.hidden_size, H * D, bias=False)
        self.out_proj = nn.Linear(H * D, cfg.hidden_size, bias=False)
        self.norm = RMSNorm(H * D, LIGHTNING_NORM_EPS)
        # the Triton kernels tile head dims that are powers of two >= 16; "auto" uses the reference otherwise
        pow2 = D >= 16 and D & (D - 1) == 0
        self.backend = "reference" if cfg.kernel_backend == "auto" and not pow2 else cfg.kernel_backend
        self.register_buffer("decay", lightning_decay(layer_idx, cfg.num_hidden_layers, H), persistent=False)

    def forward(self, x, token_mask, state, use_cache):
        B, T, _ = x.shape
        H, D = self.cfg.num_attention_heads, self.cfg.head_dim
        qkv = F.silu(self.qkv_proj(x))  # [B, T, 3*H*D]
        if token_mask is not None:
            qkv = qkv * token_mask[:, :, None].to(qkv.dtype)
        # transformers' layout: per head [q | k | v], not [all q | all k | all v]
        q, k, v = qkv.view(B, T, H, 3 * D).split(D, dim=-1)  # each [B, T, H, D]
        backend = self.backend
        if backend == "recurrent":
            o, state = naive_recurrent_lightning_attn(q, k, v, self.decay, state)
        elif T == 1 and state is not None:
            o, state = kernels.lightning_decode(q[:, 0], k[:, 0], v[:, 0], state, self.decay, backend=backend)
            o = o[:, None]  # [B, 1, H, D]
        else:
            o, state = kernels.lightning_attn(
                q, k, v, self.decay, initial_state=state, output_final_state=use_cache, backend=backend
            )
        o = self.norm(o.reshape(B, T, H * D))
        o = torch.sigmoid(self.output_gate(x)) * o
        return self.out_proj(o), (state if use_cache else None)


def rope_cos_sin(positions: torch.Tensor, rotary_dim: int, theta: float, dtype) -> tuple:
    """positions [B, T] -> cos, sin [B, 1, T, rotary_dim] (neox layout: halves, not pairs)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float) / rotary_dim))
    freqs = positions[..., None].float() * inv_freq.to(positions.device)  # [B, T, rotary_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] dims of x [B, H, T, D]; the rest pass (partial RoPE of M1)."""
    rd = cos.shape[-1]
    rot, rest = x[..., :rd], x[..., rd:]
    half = rd // 2
    rotated = torch.cat((-rot[..., half:], rot[..., :half]), dim=-1)
    return torch.cat((rot * cos + rotated * sin, rest), dim=-1)


class SoftmaxAttention(nn.Module):
    def __init__(self, cfg: M1Config, layer_idx: int) -> None:
        super().__init__()
        self.cfg = cfg
        H, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, H * D, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, Hkv * D, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, Hkv * D, bias=False)
        self.o_proj = nn.Linear(H * D, cfg.hidden_size, bias=False)

    def forward(self, x, rope, attn_mask, past, use_cache):
        B, T, _ = x.shape
        D = self.cfg.head_dim
        q = self.q_proj(x).view(B, T, -1, D).transpose(1, 2)  # [B, H, T, D]
        k = self.k_proj(x).view(B, T, -1, D).transpose(1, 2)  # [B, Hkv, T, D]
        v = self.v_proj(x).view(B, T, -1, D).transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)  # [B, Hkv, S, D]
        o = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=attn_mask is None, scale=D**-0.5, enable_gqa=True
        )  # [B, H, T, D]
        o = self.o_proj(o.transpose(1, 2).reshape(B, T, -1))
        return o, ((k, v) if use_cache else None)


class Expert(nn.Module):
    """SwiGLU expert; w1 = gate, w3 = up, w2 = down (the names of the MiniMax checkpoints)."""

    def __init__(self, cfg: M1Config) -> None:
        super().__init__()
        self.w1 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.w3 = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoE(nn.Module):
    def __init__(self, cfg: M1Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.gate = nn.Linear(cfg.hidden_size, cfg.num_local_experts, bias=False)
        self.experts = nn.ModuleList(Expert(cfg) for _ in range(cfg.num_local_experts))

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 router logits [N, E] from an fp32 GEMM, whatever the weights' dtype: a bf16 GEMM moved
        0.17% of a layer's tokens to other experts than the fp32 choice, most of the MoE's 1-3% error
        against an fp32 reference (H200, bench/results/vllm_h200.md)."""
        return F.linear(x.float(), self.gate.weight.float())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [N, d] -> (output [N, d], fp32 router logits [N, E])."""
        if self.training and self.cfg.router_jitter_noise > 0:
            j = self.cfg.router_jitter_noise
            x = x * torch.empty_like(x).uniform_(1.0 - j, 1.0 + j)
        logits = self.router_logits(x)
        probs = torch.softmax(logits, dim=-1)
        top_w, top_i = torch.topk(probs, self.cfg.num_experts_per_tok, dim=-1)  # [N, k]
        top_w = top_w / top_w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(top_i == e)
            if tok.numel() == 0:
                continue
            y = expert(x[tok]) * top_w[tok, slot, None]
            out.index_add_(0, tok, y.to(out.dtype))
        return out, logits


class DecoderLayer(nn.Module):
    def __init__(self, cfg: M1Config, layer_idx: int) -> None:
        super().__init__()
        self.kind = cfg.layer_types[layer_idx]
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        if self.kind == LINEAR:
            self.self_attn = LightningAttention(cfg, layer_idx)
            self.alpha, self.beta = cfg.linear_attn_alpha_factor, cfg.linear_attn_beta_factor
        else:
            self.self_attn = SoftmaxAttention(cfg, layer_idx)
            self.alpha, self.beta = cfg.full_attn_alpha_factor, cfg.full_attn_beta_factor
        self.mlp_alpha, self.mlp_beta = cfg.mlp_alpha_factor, cfg.mlp_beta_factor
        self.block_sparse_moe = SparseMoE(cfg)

    def forward(self, x, token_mask, rope, attn_mask, past, use_cache):
        B, T, d = x.shape
        h = self.input_layernorm(x)
        if self.kind == LINEAR:
            a, present = self.self_attn(h, token_mask, past, use_cache)
        else:
            a, present = self.self_attn(h, rope, attn_mask, past, use_cache)
        x = self.alpha * h + self.beta * a  # post-norm: the residual is taken after the norm
        h = self.post_attention_layernorm(x)
        m, router_logits = self.block_sparse_moe(h.reshape(B * T, d))
        x = self.mlp_alpha * h + self.mlp_beta * m.view(B, T, d)
        return x, present, router_logits


@dataclass
class M1Cache:
    """Decoding state: a fp32 [B, H, Dk, Dv] state per lightning layer, (k, v) [B, Hkv, S, D] per
    softmax layer; ``key_mask`` [B, S] marks the cached positions that are real tokens and
    ``next_pos`` [B] is the RoPE position of each sequence's next token."""

    layers: list
    key_mask: torch.Tensor
    next_pos: torch.Tensor

    def select(self, idx: torch.Tensor) -> M1Cache:
        """Keep the sequences ``idx`` (drop finished ones from a decoding batch)."""
        layers = [(p[0][idx], p[1][idx]) if isinstance(p, tuple) else p[idx] for p in self.layers]
        return M1Cache(layers, self.key_mask[idx], self.next_pos[idx])


@dataclass
class M1Output:
    logits: torch.Tensor | None  # [B, T, V]
    loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    cache: M1Cache | None = None
    hidden_states: torch.Tensor | None = None  # [B, T, d] after the final norm


def load_balancing_loss(router_logits: list, top_k: int, token_mask: torch.Tensor | None) -> torch.Tensor:
    """Switch-Transformer auxiliary loss over all layers, as transformers computes it:
    ``E * sum_e f_e * P_e`` with f_e the fraction of top-k picks and P_e the mean router probability."""
    E = router_logits[0].shape[-1]
    probs = torch.softmax(torch.stack(router_logits).float(), dim=-1)  # [L, N, E]
    picks = F.one_hot(torch.topk(probs, top_k, dim=-1).indices, E).sum(2).float()  # [L, N, E]
    w = torch.ones(probs.shape[1], device=probs.device) if token_mask is None else token_mask.reshape(-1).float()
    rows = w.sum() * probs.shape[0]
    f = (picks * w[None, :, None]).sum((0, 1)) / rows
    P = (probs * w[None, :, None]).sum((0, 1)) / rows
    return E * (f * P).sum()


class M1Model(nn.Module):
    def __init__(self, cfg: M1Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.gradient_checkpointing = False

    def forward(self, input_ids, attention_mask=None, cache=None, use_cache=False, position_ids=None):
        """Returns (hidden [B, T, d], new cache or None, router logits per layer)."""
        B, T = input_ids.shape
        dev = input_ids.device
        token_mask = None if attention_mask is None else attention_mask.bool()  # [B, T]
        real = torch.ones(B, T, dtype=torch.bool, device=dev) if token_mask is None else token_mask
        past_len = 0 if cache is None else cache.key_mask.shape[1]
        start = torch.zeros(B, dtype=torch.long, device=dev) if cache is None else cache.next_pos
        if position_ids is None:
            position_ids = start[:, None] + (real.long().cumsum(1) - 1).clamp(min=0)  # [B, T]
        key_mask = real if cache is None else torch.cat((cache.key_mask, real), dim=1)  # [B, S]
        attn_mask = None
        if cache is not None or token_mask is not None:
            qi = torch.arange(T, device=dev)[:, None] + past_len
            kj = torch.arange(past_len + T, device=dev)[None, :]
            # a padded query attends to itself only, so no softmax row is empty
            attn_mask = ((kj <= qi) & key_mask[:, None, :]) | (kj == qi)[None]  # [B, T, S]
            attn_mask = attn_mask[:, None]  # [B, 1, T, S]
        x = self.embed_tokens(input_ids)  # [B, T, d]
        rope = rope_cos_sin(position_ids, self.cfg.rotary_dim, self.cfg.rope_theta, x.dtype)
        presents, router_logits = [], []
        for i, layer in enumerate(self.layers):
            past = None if cache is None else cache.layers[i]
            args = (x, token_mask, rope, attn_mask, past, use_cache)
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x, present, logits = checkpoint(layer, *args, use_reentrant=False)
            else:
                x, present, logits = layer(*args)
            presents.append(present)
            router_logits.append(logits)
        new_cache = M1Cache(presents, key_mask, start + real.long().sum(1)) if use_cache else None
        return self.norm(x), new_cache, router_logits


class M1ForCausalLM(nn.Module):
    """``M1ForCausalLM(cfg)(input_ids, attention_mask=None, labels=None)`` -> ``M1Output``."""

    def __init__(self, cfg: M1Config) -> None:
        super().__init__()
        self.config = cfg
        self.model = M1Model(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)) and module.weight.device.type != "meta":
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    def gradient_checkpointing_enable(self) -> None:
        """Recompute each decoder layer in the backward pass (activation memory of one layer)."""
        self.model.gradient_checkpointing = True

    def head_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LM head; fp32 logits when ``lm_head_fp32`` (report section 3.3)."""
        if self.config.lm_head_fp32:
            return F.linear(hidden.float(), self.lm_head.weight.float())
        return self.lm_head(hidden)

    def forward(self, input_ids, attention_mask=None, labels=None, cache=None, use_cache=False,
                position_ids=None, logits_to_keep: int = 0) -> M1Output:
        """``logits_to_keep`` > 0 computes logits for the last that many positions only (decoding)."""
        hidden, new_cache, router_logits = self.model(input_ids, attention_mask, cache, use_cache, position_ids)
        logits = self.head_logits(hidden[:, -logits_to_keep:] if logits_to_keep else hidden)
        aux = load_balancing_loss(router_logits, self.config.num_experts_per_tok, attention_mask)
        loss = None
        if labels is not None:
            ce = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
            )
            loss = ce + self.config.router_aux_loss_coef * aux
        return M1Output(logits=logits, loss=loss, aux_loss=aux, cache=new_cache, hidden_states=hidden)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights count once

    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors`` that transformers' ``MiniMaxForCausalLM`` loads."""
        from model.checkpoint import save_checkpoint

        return save_checkpoint(self, out_dir)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype | None = None, **overrides) -> M1ForCausalLM:
        """Load a checkpoint saved by us or by transformers (``config.json`` + safetensors)."""
        from model.checkpoint import load_checkpoint

        return load_checkpoint(cls, path, dtype=dtype, **overrides)


__all__ = ["FULL", "LINEAR", "M1Cache", "M1ForCausalLM", "M1Model", "M1Output", "lightning_decay"]
