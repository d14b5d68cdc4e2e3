"""Fused per-token log-probabilities and entropy through the LM head, in fp32, tiled like a GEMM.

The report's FP32 LM head (section 3.3): logits ``z = h W^T`` must be fp32 for training and
inference probabilities to agree. Materializing ``[N, V]`` fp32 logits at V=200064 costs 0.8 MB a
token, so each program computes one ``[BM, BN]`` tile of logits in fp32 registers (bf16 products
are exact in fp32; the accumulation is fp32) and folds it at once into the tile's log-sum-exp
statistics: per row the tile's max ``m``, ``l = sum e^(z-m)``, ``a = sum e^(z-m) z`` (for the
entropy ``H = lse - a/l``) and the target's logit if the tile holds it. A few bytes per row and
tile are combined on the host into the log-probability, the entropy and the per-row log-sum-exp,
which is all the backward keeps.

The backward recomputes the logits one vocabulary chunk at a time, writes
``dz = g_lp (onehot - p) - g_ent p (log p + H)`` for that chunk only, and hands it to two
matrix products (``dh += dz W_c``, ``dW_c = dz^T h``).

Both kernels are GEMMs with an epilogue, at GEMM speed only if the operands stay in L2: tiles are
visited in groups of ``GROUP_M`` row blocks, so the programs running at one time share a few row
blocks of ``h`` and a few column blocks of ``W`` (a plain row-major order streams all of ``h`` from
memory for every column block). Operands arrive through TMA descriptors (zero-filled past the
edges).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

# Tiles for d >= 64 on an H200, chosen by the sweep in bench/logprobs.py; the interpreter tests
# use tiny ones.
FWD_CONFIG = {"BM": 128, "BN": 256, "BK": 64, "GROUP_M": 16, "num_warps": 8, "num_stages": 3}
BWD_CONFIG = {"BM": 128, "BN": 256, "BK": 64, "GROUP_M": 16, "num_warps": 8, "num_stages": 3}
SMALL_TILES = {"BM": 16, "BN": 32, "BK": 16, "GROUP_M": 2}
# Shared memory the operand pipeline may take: num_stages x ([BM, BK] + [BN, BK]) tiles. An H200
# block has 227 KiB (H200_SHARED_MEMORY); the rest is left to the epilogue. fp32 operands (an FP32
# head upcasts the states too) at the bf16 tiles asked for 262,160 bytes and failed to launch there
# (LOG 2026-12-02). This is a model: Triton's own count (`shared_memory_bytes`) is 147,480 bytes for
# bf16 at BK 64 and 131,088 for fp32 at BK 32 (ieee dots keep two operand stages plus a [BN, BK]
# copy instead of three stages).
SMEM_BUDGET = 200 * 1024
H200_SHARED_MEMORY = 232448  # the most shared memory one block may ask for on an H200
VOCAB_CHUNK = 16384  # vocabulary rows per backward chunk: [N, 16384] dz in the input dtype


@triton.jit
def _tile_of(pid, n_m, n_n, GROUP_M: tl.constexpr):
    """Program -> (row block, column block), GROUP_M row blocks at a time, column-major inside."""
    width = GROUP_M * n_n
    first_m = (pid // width) * GROUP_M
    size_m = tl.minimum(n_m - first_m, GROUP_M)
    return first_m + (pid % width) % size_m, (pid % width) // size_m


@triton.jit
def _logits_tile(h_desc, w_desc, off_m, off_n, D, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                 PRECISION: tl.constexpr):
    """fp32 logits of rows off_m.. x vocabulary rows off_n..: [BM, BN]."""
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for d0 in range(0, D, BK):
        b_h = h_desc.load([off_m, d0])  # [BM, BK]
        b_w = w_desc.load([off_n, d0])  # [BN, BK]
        acc = tl.dot(b_h, b_w.T, acc=acc, input_precision=PRECISION)
    return acc


@triton.jit
def _fwd_kernel(
    h_desc,  # [N, D] blocks [BM, BK]
    w_desc,  # [V, D] blocks [BN, BK]
    targets,  # [N] int64
    stats,  # [4, n_n, N] fp32: max, sum of exp, sum of exp * logit, target logit (0 if not in the tile)
    N,
    V,
    D,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    GROUP_M: tl.constexpr,
    PRECISION: tl.constexpr,
):
    n_m, n_n = tl.cdiv(N, BM), tl.cdiv(V, BN)
    i_m, i_n = _tile_of(tl.program_id(0), n_m, n_n, GROUP_M)
    z = _logits_tile(h_desc, w_desc, i_m * BM, i_n * BN, D, BM, BN, BK, PRECISION)
    rows = i_m * BM + tl.arange(0, BM)
    cols = i_n * BN + tl.arange(0, BN)
    m_r, m_c = rows < N, cols < V
    tgt = tl.load(targets + rows, mask=m_r, other=-1)
    z = tl.where(m_c[None, :], z, float("-inf"))
    b_m = tl.max(z, axis=1)
    p = tl.exp(z - b_m[:, None])
    b_l = tl.sum(p, axis=1)
    b_a = tl.sum(p * tl.where(m_c[None, :], z, 0.0), axis=1)
    b_t = tl.sum(tl.where(cols[None, :] == tgt[:, None], z, 0.0), axis=1)
    base = i_n.to(tl.int64) * N + rows
    plane = n_n.to(tl.int64) * N
    tl.store(stats + base, b_m, mask=m_r)
    tl.store(stats + plane + base, b_l, mask=m_r)
    tl.store(stats + 2 * plane + base, b_a, mask=m_r)
    tl.store(stats + 3 * plane + base, b_t, mask=m_r)


@triton.jit
def _bwd_kernel(
    h_desc,  # [N, D] blocks [BM, BK]
    w_desc,  # [V, D] blocks [BN, BK] (the whole head; the chunk starts at row v0)
    targets,  # [N] int64
    lse,  # [N] fp32
    ent,  # [N] fp32
    g_lp,  # [N] fp32 upstream gradient of the log-probabilities
    g_ent,  # [N] fp32 upstream gradient of the entropy
    dz,  # [N, VC] gradient of the chunk's logits
    N,
    v0,
    VC,
    D,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BK: tl.constexpr,
    GROUP_M: tl.constexpr,
    PRECISION: tl.constexpr,
):
    i_m, i_n = _tile_of(tl.program_id(0), tl.cdiv(N, BM), tl.cdiv(VC, BN), GROUP_M)
    z = _logits_tile(h_desc, w_desc, i_m * BM, v0 + i_n * BN, D, BM, BN, BK, PRECISION)
    rows = i_m * BM + tl.arange(0, BM)
    cols = i_n * BN + tl.arange(0, BN)
    m_r, m_c = rows < N, cols < VC
    b_lse = tl.load(lse + rows, mask=m_r, other=0.0)
    b_ent = tl.load(ent + rows, mask=m_r, other=0.0)
    b_glp = tl.load(g_lp + rows, mask=m_r, other=0.0)
    b_gent = tl.load(g_ent + rows, mask=m_r, other=0.0)
    tgt = tl.load(targets + rows, mask=m_r, other=-1) - v0
    logp = z - b_lse[:, None]
    p = tl.exp(logp)
    onehot = (cols[None, :] == tgt[:, None]).to(tl.float32)
    b_dz = b_glp[:, None] * (onehot - p) - b_gent[:, None] * p * (logp + b_ent[:, None])
    p_dz = dz + rows.to(tl.int64)[:, None] * VC + cols[None, :]
    tl.store(p_dz, b_dz.to(dz.dtype.element_ty), mask=m_r[:, None] & m_c[None, :])


def _precision(x):
    return "ieee" if x.dtype == torch.float32 else "tf32"


def _config(base, D, itemsize):
    """The tiles for rows of ``D`` elements of ``itemsize`` bytes: BK halves until the operand
    pipeline fits ``SMEM_BUDGET``."""
    if D < 64:
        return {**base, **SMALL_TILES}
    cfg = dict(base)
    while cfg["num_stages"] * (cfg["BM"] + cfg["BN"]) * cfg["BK"] * itemsize > SMEM_BUDGET and cfg["BK"] > 16:
        cfg["BK"] //= 2
    return cfg


def shared_memory_bytes(backward: bool, dtype: torch.dtype, D: int = 6144, arch: int = 90) -> int:
    """Shared memory Triton allocates for the forward (or backward) kernel at the tiles ``_config``
    picks for rows of ``D`` elements of ``dtype``, compiled for sm_``arch`` as far as LLVM IR.

    Needs no GPU (Triton's allocation pass runs before PTX), but the kernels must be JIT functions:
    call it from a process without ``TRITON_INTERPRET=1``.
    """
    from triton._C.libtriton import ir
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from triton.compiler.compiler import make_backend

    cfg = _config(BWD_CONFIG if backward else FWD_CONFIG, D, dtype.itemsize)
    ty = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    sig = {"h_desc": f"tensordesc<{ty}[{cfg['BM']},{cfg['BK']}]>", "w_desc": f"tensordesc<{ty}[{cfg['BN']},{cfg['BK']}]>",
           "targets": "*i64"}
    if backward:
        sig |= {"lse": "*fp32", "ent": "*fp32", "g_lp": "*fp32", "g_ent": "*fp32", "dz": f"*{ty}", "N": "i32", "v0": "i32",
                "VC": "i32", "D": "i32"}
    else:
        sig |= {"stats": "*fp32", "N": "i32", "V": "i32", "D": "i32"}
    constants = {k: cfg[k] for k in ("BM", "BN", "BK", "GROUP_M")} | {"PRECISION": "ieee" if ty == "fp32" else "tf32"}
    src = ASTSource(_bwd_kernel if backward else _fwd_kernel, sig | dict.fromkeys(constants, "constexpr"), constants)
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    options = backend.parse_options({"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]})
    stages = {}
    backend.add_stages(stages, options, src.language)
    context = ir.context()
    ir.load_dialects(context)
    backend.load_dialects(context)
    module = src.make_ir(target, options, backend.get_codegen_implementation(options), backend.get_module_map(), context)
    metadata = {}
    for ext in ("ttir", "ttgir", "llir"):  # "llir" runs the allocation and records metadata["shared"]
        module = stages[ext](module, metadata)
    return metadata["shared"]


def _descriptors(hidden, weight, cfg):
    return (TensorDescriptor.from_tensor(hidden, [cfg["BM"], cfg["BK"]]),
            TensorDescriptor.from_tensor(weight, [cfg["BN"], cfg["BK"]]))


def _fwd(hidden, weight, targets):
    N, D = hidden.shape
    V = weight.shape[0]
    cfg = _config(FWD_CONFIG, D, hidden.element_size())
    n_m, n_n = triton.cdiv(N, cfg["BM"]), triton.cdiv(V, cfg["BN"])
    stats = hidden.new_empty(4, n_n, N, dtype=torch.float32)
    _fwd_kernel[(n_m * n_n,)](
        *_descriptors(hidden, weight, cfg), targets, stats, N, V, D,
        BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], GROUP_M=cfg["GROUP_M"], PRECISION=_precision(hidden),
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    m, l, a, zt = stats.unbind(0)  # each [n_n, N]
    m_max = m.max(0).values  # [N]
    w = torch.exp(m - m_max)  # [n_n, N]
    l_sum = (l * w).sum(0)
    lse = m_max + torch.log(l_sum)
    entropy = lse - (a * w).sum(0) / l_sum
    return zt.sum(0) - lse, entropy, lse


def _bwd(hidden, weight, targets, lse, entropy, g_lp, g_ent, weight_needs_grad):
    N, D = hidden.shape
    V = weight.shape[0]
    cfg = _config(BWD_CONFIG, D, hidden.element_size())
    h_desc, w_desc = _descriptors(hidden, weight, cfg)
    dh = torch.zeros(N, D, dtype=torch.float32, device=hidden.device)
    dw = torch.empty_like(weight) if weight_needs_grad else None
    vc_max = min(VOCAB_CHUNK, V)
    dz_buf = hidden.new_empty(N, vc_max)
    for v0 in range(0, V, vc_max):
        vc = min(vc_max, V - v0)
        dz = dz_buf if vc == vc_max else hidden.new_empty(N, vc)
        _bwd_kernel[(triton.cdiv(N, cfg["BM"]) * triton.cdiv(vc, cfg["BN"]),)](
            h_desc, w_desc, targets, lse, entropy, g_lp, g_ent, dz, N, v0, vc, D,
            BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"], GROUP_M=cfg["GROUP_M"], PRECISION=_precision(hidden),
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
        )
        w_c = weight[v0 : v0 + vc]
        dh.add_(dz @ w_c)
        if dw is not None:
            torch.mm(dz.t(), hidden, out=dw[v0 : v0 + vc])
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
    """hidden [N, d], weight [V, d], targets [N] -> (logprob [N] fp32, entropy [N] fp32), fused.

    The rows of ``hidden`` and ``weight`` must span a multiple of 16 bytes (TMA's rule: d a
    multiple of 8 in bf16, of 4 in fp32).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)}, weight {tuple(weight.shape)}: expected [N, d] and [V, d]")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets {tuple(targets.shape)}: expected [N]=[{hidden.shape[0]}]")
    dtype = torch.promote_types(hidden.dtype, weight.dtype)  # an fp32 head upcasts bf16 states exactly
    if hidden.shape[1] * dtype.itemsize % 16:
        raise ValueError(f"d={hidden.shape[1]} in {dtype}: the Triton kernel needs rows of a multiple of 16 bytes")
    return FusedLogprobs.apply(
        hidden.to(dtype).contiguous(), weight.to(dtype).contiguous(), targets.long().contiguous()
    )
