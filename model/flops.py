"""python -m model.flops --output docs/figures/flops_fig1.png

Theoretical inference FLOPs against generation length (the report's Figure 1, right) for
MiniMax-M1, DeepSeek-R1 and Qwen3-235B-A22B, from their published configurations.

Counting convention (forward pass, one generated token at a time, batch 1):
- 2 FLOPs per multiply-accumulate; only matrix products count (norms, activations, softmax, RoPE,
  router softmax and the embedding lookup are ignored, all O(d) per token).
- Projections and experts: 2 x the weights one token uses (top-k routed + shared experts, the dense
  layers, attention projections, the LM head).
- Softmax attention for the token at context length n (tokens it attends to, itself included):
  2 * n * H * (d_qk + d_v) per layer (q.K^T and the weighted sum of V).
  DeepSeek's MLA is counted in its standard multi-head form (d_qk = 128 + 64 = 192, d_v = 128),
  as its published shapes give it; ``mla_absorbed=True`` counts the weight-absorbed decoding form
  instead (scores over the 512 + 64 latent, values in the 512 latent).
- Lightning attention: 4 * H * D^2 per layer and token (the state update k^T v and the read q S),
  independent of n.
- Figure 1 (right) and the report's ratios are read as the FLOPs of the token generated at length L,
  ``flops_per_token(arch, L)``: its y axis tops out near 7e11 at 128K, which is DeepSeek-R1's
  per-token cost there under this convention (7.1e11), while the cumulative cost is about 5e16.
  Then M1 / DeepSeek-R1 is 0.29 at 64K and 0.22 at 100K (the report: "less than 50%" and
  "approximately 25%").
- ``cumulative_flops`` is the whole generation's cost, sum_{n=1..L} flops_per_token(n) (no prompt);
  by that measure the ratio is 0.45 at 64K and 0.34 at 100K (docs/LOG.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arch:
    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    qk_head_dim: int
    v_head_dim: int
    attn_proj_params: int  # q, k, v, o (and gate) projection weights of one softmax layer
    lightning_layers: int = 0  # of num_layers
    lightning_proj_params: int = 0  # qkv, output gate, out projection of one lightning layer
    lightning_head_dim: int = 0
    expert_params: int = 0  # one routed expert (3 matrices)
    experts_per_tok: int = 0
    num_experts: int = 0
    shared_expert_params: int = 0
    dense_layers: int = 0  # leading layers with a dense FFN instead of experts
    dense_ffn_params: int = 0
    absorbed_qk_dim: int = 0  # MLA decoding form (latent + rope dims), 0 = not MLA
    absorbed_v_dim: int = 0

    @property
    def softmax_layers(self) -> int:
        return self.num_layers - self.lightning_layers

    def params(self) -> dict[str, float]:
        """Total and active (per token) parameters of the main model (no MTP head, no vision)."""
        moe_layers = self.num_layers - self.dense_layers
        router = self.num_experts * self.hidden_size
        attn = self.softmax_layers * self.attn_proj_params + self.lightning_layers * self.lightning_proj_params
        embed_head = 2 * self.vocab_size * self.hidden_size
        common = attn + self.dense_layers * self.dense_ffn_params + moe_layers * (router + self.shared_expert_params)
        return {
            "total": embed_head + common + moe_layers * self.num_experts * self.expert_params,
            "active": embed_head + common + moe_layers * self.experts_per_tok * self.expert_params,
        }


def _minimax_m1() -> Arch:
    d, H, D, Hkv, inter = 6144, 64, 128, 8, 9216
    return Arch("minimax-m1", 200064, d, 80, H, D, D,
                attn_proj_params=2 * d * H * D + 2 * d * Hkv * D,
                lightning_layers=70, lightning_proj_params=5 * d * H * D, lightning_head_dim=D,
                expert_params=3 * d * inter, experts_per_tok=2, num_experts=32)


def _deepseek_r1() -> Arch:
    # DeepSeek-V3 / R1 config.json: MLA with q_lora_rank 1536, kv_lora_rank 512, nope 128, rope 64, v 128
    d, H, q_rank, kv_rank, nope, rope, v = 7168, 128, 1536, 512, 128, 64, 128
    mla = d * q_rank + q_rank * H * (nope + rope) + d * (kv_rank + rope) + kv_rank * H * (nope + v) + H * v * d
    return Arch("deepseek-r1", 129280, d, 61, H, nope + rope, v, attn_proj_params=mla,
                expert_params=3 * d * 2048, experts_per_tok=8, num_experts=256,
                shared_expert_params=3 * d * 2048, dense_layers=3, dense_ffn_params=3 * d * 18432,
                absorbed_qk_dim=kv_rank + rope, absorbed_v_dim=kv_rank)


def _qwen3_235b() -> Arch:
    d, H, Hkv, D = 4096, 64, 4, 128
    return Arch("qwen3-235b-a22b", 151936, d, 94, H, D, D, attn_proj_params=2 * d * H * D + 2 * d * Hkv * D,
                expert_params=3 * d * 1536, experts_per_tok=8, num_experts=128)


ARCHS: dict[str, Arch] = {a.name: a for a in (_minimax_m1(), _deepseek_r1(), _qwen3_235b())}


def _get(arch: str | Arch) -> Arch:
    if isinstance(arch, Arch):
        return arch
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch]


def _linear_and_attention(a: Arch, mla_absorbed: bool) -> tuple[float, float]:
    """(FLOPs per token independent of context, FLOPs per token per unit of context length)."""
    p = a.params()
    embed = a.vocab_size * a.hidden_size  # a lookup, not a product
    const = 2 * (p["active"] - embed) + a.lightning_layers * 4 * a.num_heads * a.lightning_head_dim**2
    qk, v = a.qk_head_dim, a.v_head_dim
    if mla_absorbed and a.absorbed_qk_dim:
        qk, v = a.absorbed_qk_dim, a.absorbed_v_dim
    return const, 2 * a.softmax_layers * a.num_heads * (qk + v)


def flops_per_token(arch: str | Arch, context_length: int, mla_absorbed: bool = False) -> float:
    """Forward FLOPs of one generated token that attends to ``context_length`` tokens (itself included)."""
    const, per_ctx = _linear_and_attention(_get(arch), mla_absorbed)
    return const + per_ctx * context_length


def cumulative_flops(arch: str | Arch, generation_length: int, mla_absorbed: bool = False) -> float:
    """FLOPs to generate ``generation_length`` tokens from an empty context: sum of flops_per_token(1..L)."""
    const, per_ctx = _linear_and_attention(_get(arch), mla_absorbed)
    L = generation_length
    return const * L + per_ctx * L * (L + 1) / 2


def ratio(arch: str, baseline: str, generation_length: int, mla_absorbed: bool = False,
          cumulative: bool = False) -> float:
    """FLOPs of ``arch`` over ``baseline`` at a generation length (per token, or the whole generation)."""
    cost = cumulative_flops if cumulative else flops_per_token
    return cost(arch, generation_length, mla_absorbed) / cost(baseline, generation_length, mla_absorbed)


def draw_figure(out: str | Path, max_length: int = 128_000, mla_absorbed: bool = False) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = list(range(0, max_length + 1, 1000))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, label in (("deepseek-r1", "DeepSeek R1"), ("qwen3-235b-a22b", "Qwen3-235B-A22B"),
                        ("minimax-m1", "MiniMax-M1")):
        ax.plot([x / 1000 for x in lengths], [flops_per_token(name, max(x, 1), mla_absorbed) / 1e11 for x in lengths],
                label=label)
    ax.set_xlabel("Generation length (K tokens)")
    ax.set_ylabel("FLOPs per generated token (x 1e11)")
    r64, r100 = (ratio("minimax-m1", "deepseek-r1", L, mla_absorbed) for L in (64_000, 100_000))
    ax.set_title(f"Inference FLOPs; M1/R1 = {r64:.0%} at 64K, {r100:.0%} at 100K", fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", default="docs/figures/flops_fig1.png")
    p.add_argument("--max-length", type=int, default=128_000)
    p.add_argument("--mla-absorbed", action="store_true", help="count DeepSeek's MLA in its absorbed form")
    args = p.parse_args(argv)
    print(f"{'arch':18s} {'total':>9s} {'active':>9s} {'GFLOP/tok@1':>12s} {'64K':>10s} {'100K':>10s}")
    for name, a in ARCHS.items():
        prm = a.params()
        print(f"{name:18s} {prm['total'] / 1e9:8.1f}B {prm['active'] / 1e9:8.1f}B "
              f"{flops_per_token(name, 1, args.mla_absorbed) / 1e9:12.1f} "
              f"{cumulative_flops(name, 64_000, args.mla_absorbed):10.3e} "
              f"{cumulative_flops(name, 100_000, args.mla_absorbed):10.3e}")
    for L in (32_000, 64_000, 100_000, 128_000):
        per_token = ratio("minimax-m1", "deepseek-r1", L, args.mla_absorbed)
        whole = ratio("minimax-m1", "deepseek-r1", L, args.mla_absorbed, cumulative=True)
        print(f"M1 / DeepSeek-R1 at {L // 1000}K: {per_token:.3f} per token, {whole:.3f} cumulative")
    print(f"wrote {draw_figure(args.output, args.max_length, args.mla_absorbed)}")


if __name__ == "__main__":
    main()
