"""python -m tasks.train.agreement --model DIR --prompts FILE --output DIR [--figure docs/figures/agreement_tiny.png]

Train/inference probability agreement (report section 3.3, Figure 3). The generation engine
(``model.generation.TorchEngine``: recurrent lightning decode, one token at a time) samples responses
to the prompts and records each sampled token's probability; the training path
(``model.logprobs.token_logprobs``: the chunked lightning kernel over the full sequences, log-probs
through ``kernels.fused_logprobs``) recomputes the same tokens' probabilities. Reported for a bf16 LM
head and for the FP32 head: the Pearson correlation of the two probabilities and their mean
absolute difference, plus the scatter plot of Figure 3. Writes ``OUT/agreement.json`` and
``OUT/agreement.png``.

``--model`` is a policy directory written by ``tasks.train.sft`` (``tasks.train.policy.save_policy``);
``--prompts`` a JSONL file of ``{"question": ...}`` rows (or ``"prompt"``), or plain text, one
prompt a line. The head switch applies to ``M1ForCausalLM``; a Hugging Face model is measured with
the FP32 head only (its generation already takes fp32 logits).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

HEADS = ("bf16", "fp32")


def read_prompts(path: str | Path) -> list[str]:
    """Questions from a JSONL file (``question`` or ``prompt`` field) or a plain-text file."""
    path = Path(path)
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            row = json.loads(line)
            text = row.get("question", row.get("prompt"))
            if not isinstance(text, str):
                raise ValueError(f"{path}:{n}: a JSON row needs a string 'question' or 'prompt'")
            out.append(text)
        else:
            out.append(line)
    if not out:
        raise ValueError(f"{path}: no prompts")
    return out


@torch.no_grad()
def sample_and_rescore(model, tok, prompts: list[list[int]], *, max_new_tokens: int, seed: int,
                       batch_size: int) -> tuple[list[float], list[float]]:
    """(inference-side, training-side) probability of every sampled token, in the same order."""
    from model.generation import SamplingParams, TorchEngine
    from model.logprobs import token_logprobs

    device = next(model.parameters()).device
    engine = TorchEngine(model, pad_token_id=tok.pad_token_id)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=1.0, stop_token_ids=(tok.eos_token_id,))
    gen = torch.Generator(device=device).manual_seed(seed)
    p_infer, p_train = [], []
    for b0 in range(0, len(prompts), batch_size):
        batch = prompts[b0 : b0 + batch_size]
        out = engine.generate(batch, params, generator=gen)
        seqs = [p + t for p, t in zip(batch, out.tokens)]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), tok.pad_token_id, dtype=torch.long, device=device)  # [B, T]
        mask = torch.zeros_like(ids)
        for i, s in enumerate(seqs):  # right padding: a causal model's real tokens never see it
            ids[i, : len(s)] = torch.tensor(s, device=device)
            mask[i, : len(s)] = 1
        lp, _ = token_logprobs(model, ids, mask)  # [B, T]
        for i, (p, toks, lps) in enumerate(zip(batch, out.tokens, out.logprobs)):
            n = len(toks)
            p_infer += [math.exp(x) for x in lps]
            p_train += lp[i, len(p) : len(p) + n].exp().tolist()
    return p_infer, p_train


def summarize(p_infer: list[float], p_train: list[float]) -> dict[str, float]:
    a = torch.tensor(p_infer, dtype=torch.float64)
    b = torch.tensor(p_train, dtype=torch.float64)
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    return {"pearson": r, "mean_abs_diff": (a - b).abs().mean().item(), "max_abs_diff": (a - b).abs().max().item(),
            "tokens": len(p_infer), "mean_prob": a.mean().item()}


def plot(results: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 4.4), squeeze=False)
    for ax, (head, res) in zip(axes[0], results.items()):
        ax.scatter(res["p_train"], res["p_infer"], s=3, alpha=0.4, linewidths=0)
        ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--")
        m = res["metrics"]
        ax.set_title(f"{head} LM head: r = {m['pearson']:.6f}, |dp| = {m['mean_abs_diff']:.1e}", fontsize=9)
        ax.set_xlabel("training-mode probability (chunked kernel)")
        ax.set_ylabel("inference-mode probability (recurrent decode)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def measure_agreement(model, tok, questions: list[str], out_dir: str | Path, *, max_new_tokens: int = 128,
                      seed: int = 0, batch_size: int = 32, title: str = "", figure: str | Path | None = None) -> dict:
    """Sample, rescore and compare with each head; writes agreement.json / agreement.png to out_dir."""
    from model import M1ForCausalLM
    from tasks.train.policy import encode_prompt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prompts = [encode_prompt(tok, q) for q in questions]
    model.eval()
    native = isinstance(model, M1ForCausalLM)
    results = {}
    for head in HEADS if native else ("fp32",):
        if native:
            model.config.lm_head_fp32 = head == "fp32"
        p_infer, p_train = sample_and_rescore(
            model, tok, prompts, max_new_tokens=max_new_tokens, seed=seed, batch_size=batch_size
        )
        results[head] = {"metrics": summarize(p_infer, p_train), "p_infer": p_infer, "p_train": p_train}
        print(f"{head} head: " + ", ".join(f"{k} {v:.6g}" for k, v in results[head]["metrics"].items()), flush=True)
    summary = {
        "model_dtype": str(next(model.parameters()).dtype),
        "device": str(next(model.parameters()).device),
        "prompts": len(prompts),
        "max_new_tokens": max_new_tokens,
        "heads": {h: r["metrics"] for h, r in results.items()},
    }
    (out_dir / "agreement.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(results, out_dir / "agreement.png", title or "train/inference agreement")
    if figure:
        plot(results, Path(figure), title or "train/inference agreement")
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="policy directory (tasks.train.sft output)")
    ap.add_argument("--prompts", required=True, help="JSONL of {question} rows or plain text lines")
    ap.add_argument("--output", required=True)
    ap.add_argument("--figure", help="also draw the plot here (e.g. docs/figures/agreement_tiny.png)")
    ap.add_argument("--max-prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"],
                    help="weights and activations; the bf16-vs-fp32 head question is a bf16-model question")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    from tasks.train.policy import load_policy

    torch.manual_seed(args.seed)
    model, tok = load_policy(args.model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device=device, dtype=getattr(torch, args.dtype))
    questions = read_prompts(args.prompts)[: args.max_prompts]
    summary = measure_agreement(model, tok, questions, args.output, max_new_tokens=args.max_new_tokens,
                                seed=args.seed, batch_size=args.batch_size, figure=args.figure,
                                title=f"{Path(args.model).name}, {args.dtype} weights, {device}")
    print(json.dumps(summary["heads"], indent=2))


if __name__ == "__main__":
    main()
