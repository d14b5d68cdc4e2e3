"""The report side of ``bench/vllm_h200.py``: Figure 3's agreement measure, the plots and the summary
tables, from the merged results (``vllm_h200.json``) and the tensors the parts leave. Needs no GPU and
no vLLM, so a results file can be summarised again here.
"""

from __future__ import annotations

from pathlib import Path

import torch


def compare(p_infer: list[float], p_train: list[float]) -> dict[str, float]:
    """Figure 3's agreement of two probability lists: Pearson r, mean and max |dp|."""
    a, b = torch.tensor(p_infer, dtype=torch.float64), torch.tensor(p_train, dtype=torch.float64)
    d = (a - b).abs()
    return {"pearson": torch.corrcoef(torch.stack([a, b]))[0, 1].item(), "mean_abs_dp": d.mean().item(),
            "max_abs_dp": d.max().item(), "tokens": len(a)}


def plots(results: dict, out: Path, work: Path, num_layers: int) -> None:
    """``vllm_agreement.png`` from the Figure 3 tensors the parts left in ``work``, and ``vllm_layers.png``
    from the random part's per-layer errors (``num_layers`` layers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(n, h) for n in ("random", "trained", "v200k") for h in ("bf16", "fp32") if (work / f"fig3_{n}_{h}.pt").exists()]
    if runs:
        fig, axes = plt.subplots((len(runs) + 1) // 2, 2, figsize=(9, 4.2 * ((len(runs) + 1) // 2)), squeeze=False)
        for ax, (n, h) in zip(axes.flat, runs):
            d = torch.load(work / f"fig3_{n}_{h}.pt")
            key = "bf16_head" if h == "bf16" else "fp32_head"
            m = compare(d["p_vllm"], d[key])
            ax.scatter(d[key], d["p_vllm"], s=2, alpha=0.3, linewidths=0)
            ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--")
            ax.set_title(f"{n}: vLLM {h} head vs trainer {h} head\nr = {m['pearson']:.5f}, mean |dp| = {m['mean_abs_dp']:.4f}", fontsize=9)
            ax.set_xlabel("trainer probability (chunked kernel, training path)")
            ax.set_ylabel("vLLM probability (rollout)")
        fig.tight_layout()
        fig.savefig(out / "vllm_agreement.png", dpi=110)
        plt.close(fig)
    layers = results.get("random", {}).get("layers")
    if layers:
        L = num_layers
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for who, style in (("vllm", "o-"), ("ours", "s--")):
            axes[0].semilogy(range(L), [layers[f"hidden/{who}/{i}"] for i in range(L)], style, label=f"{who} bf16")
            for comp in ("attn", "moe", "input_norm"):
                axes[1].semilogy(range(L), [layers[f"local/{comp}/{who}/{i}"] for i in range(L)], style, label=f"{who} {comp}")
            blocks = sorted({int(k.split("/")[3]) for k in layers if k.startswith(f"block/{who}/")})
            axes[2].semilogy(blocks, [sum(layers[f"block/{who}/{i}/{b}"] for i in range(L) if f"block/{who}/{i}/{b}" in layers)
                                      / sum(f"block/{who}/{i}/{b}" in layers for i in range(L)) for b in blocks], style, label=who)
        axes[0].set(title="hidden state after each layer vs fp32 reference", xlabel="layer", ylabel="relative error")
        axes[1].set(title="local error of each component on vLLM's own input", xlabel="layer")
        axes[2].set(title="lightning attention local error by 256-token block", xlabel="first position of block")
        for ax in axes:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "vllm_layers.png", dpi=110)
        plt.close(fig)


def summary(results: dict) -> str:
    """The markdown tables the benchmark prints last (bench/results/vllm_h200.md holds one)."""
    lines = ["| policy | vLLM head | r vs trainer bf16 head | r vs trainer fp32 head | r vs trainer fp32 model | mean abs dp (same head) | max abs dp |",
             "|---|---|---|---|---|---|---|"]
    for n in ("random", "router32", "trained", "v200k"):
        for h, f3 in results.get(n, {}).get("figure3", {}).items():
            same = f3["vs_trainer_bf16_head" if h == "bf16" else "vs_trainer_fp32_head"]
            r = {k: f"{f3[f'vs_trainer_{k}']['pearson']:.6f}" if f"vs_trainer_{k}" in f3 else "n/a"
                 for k in ("bf16_head", "fp32_head", "fp32_model")}
            lines.append(f"| {n} | {h} | {r['bf16_head']} | {r['fp32_head']} | {r['fp32_model']} | "
                         f"{same['mean_abs_dp']:.5f} | {same['max_abs_dp']:.4f} |")
    tp = results.get("random", {}).get("throughput", {})
    if tp:
        lines += ["", "| engine | tokens/s |", "|---|---|"]
        for k, v in tp.get("vllm", {}).items():
            lines.append(f"| vLLM 0.23, FULL_DECODE_ONLY CUDA graphs, {k} | {v['tokens_per_s']:.0f} |")
        for k, v in tp.get("torch", {}).items():
            lines.append(f"| TorchEngine {k} ({v['new_tokens']} new tokens) | {v['tokens_per_s']:.0f} ({v['ms_per_step']:.2f} ms/step) |")
    kernel = {k: v for k, v in results.get("kernel", {}).items() if k.startswith("N=")}
    if kernel:
        lines += ["", "| fused log-probs | BK | shared fwd/bwd | rel err logprob | entropy | grad h | grad w | fwd ms | bwd ms |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for k, v in kernel.items():
            errs = " | ".join(f"{v[e]:.1e}" if e in v else "-" for e in ("err_logprob", "err_entropy", "err_grad_h", "err_grad_w"))
            lines.append(f"| {k} | {v['tiles']['BK']} | {v.get('shared_fwd')}/{v.get('shared_bwd')} | {errs} | "
                         f"{v.get('fwd_ms', float('nan')):.2f} | {v.get('bwd_ms', float('nan')):.2f} |" + (f" {v['error']}" if "error" in v else ""))
    for name in ("speed", "speed_vp", "speed_mp"):
        rows = results.get(name, {}).get("rows", [])
        if rows:
            lines += ["", f"| {name}: prompts | logprobs | seeds | new tokens | tokens/s | ms/step |", "|---|---|---|---|---|---|"]
            lines += [f"| {r['prompts']} | {r['logprobs']} | {r['seeds']} | {r['new_tokens']} | {r['tokens_per_s']:.0f} | "
                      f"{r['ms_per_step']:.2f} |" for r in rows]
    if "profile" in results.get("speed", {}):
        lines.append(f"profile: {results['speed']['profile']}")
    rl = results.get("rl", {})
    if "metrics" in rl:
        lines.append("rl: " + "; ".join(f"step {m.get('step')}: r={m.get('health/prob_pearson', float('nan')):.5f}"
                                        for m in rl["metrics"] if "health/prob_pearson" in m))
        lines.append(f"rl mlflow: {rl.get('mlflow')}")
    for name, r in results.items():
        if "error" in r:
            lines.append(f"part {name}: ERROR {r['error']}")
    return "\n".join(lines)
