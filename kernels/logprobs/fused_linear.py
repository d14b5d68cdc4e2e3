"""Fused per-token log-probabilities and entropy through the LM head, in fp32, chunked over the vocabulary.

The report's FP32 LM head (section 3.3): logits ``z = h W^T`` must be fp32 for training and
inference probabilities to agree. Materializing ``[N, V]`` fp32 logits at V=200064 costs 0.8 MB a
token, so the forward kernel computes a ``[BM, BN]`` tile of logits in fp32 registers (bf16
products are exact in fp32; the accumulation is fp32) and folds it at once into an online
log-sum-exp: per row the running max ``m``, ``l = sum e^(z-m)``, ``a = sum e^(z-m) z`` (for the
entropy ``H = lse - a/l``) and the target's logit. Programs split the vocabulary; a few bytes per
row and split are combined on the host.

The backward recomputes the logits one vocabulary chunk at a time, writes
``dz = g_lp (onehot - p) - g_ent p (log p + H)`` for that chunk only, and hands it to two
matrix products (``dh += dz W_c``, ``dW_c = dz^T h``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Tiles for d >= 64 on an H200 (bench/logprobs.py); the interpreter tests use tiny ones.
FWD_CONFIG = {"BM": 128, "BN": 128, "BK": 64, "num_warps": 8, "num_stages": 3}
BWD_CONFIG = {"BM": 128, "BN": 128, "BK": 64, "num_warps": 8, "num_stages": 3}
VOCAB_CHUNK = 16384  # vocabulary rows per backward chunk: [N, 16384] dz in the input dtype


@triton.jit
def _logits_tile(hidden, weight, rows, cols, m_r, m_c, D, BM: tl.constexpr, BN: tl.constexpr,
                 BK: tl.constexpr, PRECISION: tl.constexpr):
    """fp32 logits of rows x cols: [BM, BN]."""
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    o_d = tl.arange(0, BK)
    for d0 in range(0, D, BK):
        m_d = (d0 + o_d) < D
        b_h = tl.load(hidden + rows[:, None] * D + d0 + o_d[None, :], mask=m_r[:, None] & m_d[None, :], other=0.0)
        b_w = tl.load(weight + cols[:, None] * D + d0 + o_d[None, :], mask=m_c[:, None] & m_d[None, :], other=0.0)
        acc = tl.dot(b_h, tl.trans(b_w), acc=acc, input_precision=PRECISION)
    return acc


@triton.jit
def _fwd_kernel(
    hidden,  # [N, D]
    weight,  # [V, D]
    targets,  # [N] int64
    stats,  # [4, S, N] fp32: max, sum of exp, sum of exp * logit, target logit
    N,
    V,
    D,
    V_PER_SPLIT,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_m, i_s = tl.program_id(0), tl.program_id(1)
    S = tl.num_programs(1)
    rows = (i_m * BM + tl.arange(0, BM)).to(tl.int64)
    m_r = rows < N
    tgt = tl.load(targets + rows, mask=m_r, other=-1)
    b_m = tl.full([BM], float("-inf"), dtype=tl.float32)
    b_l = tl.zeros([BM], dtype=tl.float32)
    b_a = tl.zeros([BM], dtype=tl.float32)
    b_t = tl.zeros([BM], dtype=tl.float32)
    v_lo = i_s * V_PER_SPLIT
    v_hi = tl.minimum(v_lo + V_PER_SPLIT, V)
    for v0 in range(v_lo, v_hi, BN):
        cols = (v0 + tl.arange(0, BN)).to(tl.int64)
        m_c = cols < v_hi
        z = _logits_tile(hidden, weight, rows, cols, m_r, m_c, D, BM, BN, BK, PRECISION)
        z = tl.where(m_c[None, :], z, float("-inf"))
        m_new = tl.maximum(b_m, tl.max(z, axis=1))
        alpha = tl.exp(b_m - m_new)
        p = tl.exp(z - m_new[:, None])
        b_l = b_l * alpha + tl.sum(p, axis=1)
        b_a = b_a * alpha + tl.sum(p * tl.where(m_c[None, :], z, 0.0), axis=1)
        b_t += tl.sum(tl.where(cols[None, :] == tgt[:, None], z, 0.0), axis=1)
        b_m = m_new
    base = i_s.to(tl.int64) * N + rows
    tl.store(stats + base, b_m, mask=m_r)
    tl.store(stats + S * N + base, b_l, mask=m_r)
    tl.store(stats + 2 * S * N + base, b_a, mask=m_r)
    tl.store(stats + 3 * S * N + base, b_t, mask=m_r)


@triton.jit
def _bwd_kernel(
    hidden,  # [N, D]
    weight,  # [V, D] (the chunk's rows start here)
    targets,  # [N] int64, relative to the chunk's first row
    lse,  # [N] fp32
    ent,  # [N] fp32
    g_lp,  # [N] fp32 upstream gradient of the log-probabilities
    g_ent,  # [N] fp32 upstream gradient of the entropy
    dz,  # [N, VC] gradient of the chunk's logits
    N,
    VC,
    D,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_m, i_n = tl.program_id(0), tl.program_id(1)
    rows = (i_m * BM + tl.arange(0, BM)).to(tl.int64)
    cols = (i_n * BN + tl.arange(0, BN)).to(tl.int64)
    m_r, m_c = rows < N, cols < VC
    z = _logits_tile(hidden, weight, rows, cols, m_r, m_c, D, BM, BN, BK, PRECISION)
    b_lse = tl.load(lse + rows, mask=m_r, other=0.0)
    b_ent = tl.load(ent + rows, mask=m_r, other=0.0)
    b_glp = tl.load(g_lp + rows, mask=m_r, other=0.0)
    b_gent = tl.load(g_ent + rows, mask=m_r, other=0.0)
    tgt = tl.load(targets + rows, mask=m_r, other=-1)
    logp = z - b_lse[:, None]
    p = tl.exp(logp)
    onehot = (cols[None, :] == tgt[:, None]).to(tl.float32)
    b_dz = b_glp[:, None] * (onehot - p) - b_gent[:, None] * p * (logp + b_ent[:, None])
    tl.store(dz + rows[:, None] * VC + cols[None, :], b_dz.to(dz.dtype.element_ty), mask=m_r[:, None] & m_c[None, :])


def _precision(x):
    return "ieee" if x.dtype == torch.float32 else "tf32"


def _fwd(hidden, weight, targets):
    N, D = hidden.shape
    V = weight.shape[0]
    cfg = FWD_CONFIG if D >= 64 else {**FWD_CONFIG, "BM": 16, "BN": 32, "BK": 16}
    n_m = triton.cdiv(N, cfg["BM"])
    # Enough vocabulary splits that the grid fills the device at N of a few thousand tokens.
    n_split = max(1, min(triton.cdiv(V, cfg["BN"]), triton.cdiv(528, n_m)))
    v_per_split = triton.cdiv(triton.cdiv(V, n_split), cfg["BN"]) * cfg["BN"]
    n_split = triton.cdiv(V, v_per_split)
    stats = hidden.new_empty(4, n_split, N, dtype=torch.float32)
    _fwd_kernel[(n_m, n_split)](
        hidden, weight, targets, stats, N, V, D, v_per_split,
        BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], PRECISION=_precision(hidden),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    m, l, a, zt = stats.unbind(0)  # each [S, N]
    m_max = m.max(0).values  # [N]
    w = torch.exp(m - m_max)  # [S, N]
    l_sum = (l * w).sum(0)
    lse = m_max + torch.log(l_sum)
    entropy = lse - (a * w).sum(0) / l_sum
    return zt.sum(0) - lse, entropy, lse


def _bwd(hidden, weight, targets, lse, entropy, g_lp, g_ent, weight_needs_grad):
    N, D = hidden.shape
    V = weight.shape[0]
    cfg = BWD_CONFIG if D >= 64 else {**BWD_CONFIG, "BM": 16, "BN": 32, "BK": 16}
    dh = torch.zeros(N, D, dtype=torch.float32, device=hidden.device)
    dw = torch.empty_like(weight) if weight_needs_grad else None
    vc_max = min(VOCAB_CHUNK, V)
    dz_buf = hidden.new_empty(N, vc_max)
    for v0 in range(0, V, vc_max):
        vc = min(vc_max, V - v0)
        dz = dz_buf[:, :vc] if vc == vc_max else hidden.new_empty(N, vc)
        w_c = weight[v0 : v0 + vc]
        _bwd_kernel[(triton.cdiv(N, cfg["BM"]), triton.cdiv(vc, cfg["BN"]))](
            hidden, w_c, targets - v0, lse, entropy, g_lp, g_ent, dz, N, vc, D,
            BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], PRECISION=_precision(hidden),
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        )
        dh += (dz @ w_c).float()
        if dw is not None:
            dw[v0 : v0 + vc] = dz.t() @ hidden
    return dh.to(hidden.dtype), dw


class FusedLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets):
        logp, entropy, lse = _fwd(hidden, weight, targets)
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, g_lp, g_ent):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        g_lp = torch.zeros_like(lse) if g_lp is None else g_lp.float().contiguous()
        g_ent = torch.zeros_like(lse) if g_ent is None else g_ent.float().contiguous()
        dh, dw = _bwd(hidden, weight, targets, lse, entropy, g_lp, g_ent, ctx.needs_input_grad[1])
        return (dh if ctx.needs_input_grad[0] else None), dw, None


def fused_linear_logprobs(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [N, d], weight [V, d], targets [N] -> (logprob [N] fp32, entropy [N] fp32), fused."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}: expected [N, d] and [V, d]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)}: expected [N]=[{hidden.shape[0]}]")
    dtype = torch.promote_types(hidden.dtype, weight.dtype)  # an fp32 head upcasts bf16 states exactly
    return FusedLogprobs.apply(
        hidden.to(dtype).contiguous(), weight.to(dtype).contiguous(), targets.long().contiguous()
    )
