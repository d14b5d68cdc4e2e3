"""Supervised fine-tuning on chat-formatted (question, response) pairs (report section 2, at toy scale).

    python -m tasks.sft --config params.yaml [--out-dir runs/sft] [--steps 300] [--set key=value ...]

Trains any causal LM, our M1 model or a Hugging Face one, built fresh from a spec (``sft.model``) or
loaded from a policy directory (``sft.init``), on the worked solutions of a task's items (items whose
``metadata["solution"]`` holds a reply in the chat format) or on a JSONL file of
``{"question", "response"}`` rows. The loss covers reply tokens only. Writes ``<out_dir>/policy/``
(HF-format weights + tokenizer, what ``tasks.rl.train`` starts from) and ``metrics.jsonl``; logs to
MLflow when it is importable.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from tasks.rl.policy import build_policy, encode_prompt, encode_reply, load_policy, save_policy
from tasks.rl.tracking import RunTracker


@dataclass
class SFTConfig:
    model: dict[str, Any] = field(default_factory=lambda: {"arch": "m1", "preset": "tiny"})
    init: str = ""  # a policy dir to continue from instead of a fresh ``model``
    task: str = "arithmetic"
    difficulty: int = 2
    data: str = ""  # JSONL of {"question", "response"}; overrides ``task`` when set
    examples: int = 4000
    vocab_size: int = 263  # fresh tokenizer: 256 bytes + 7 specials, no merges (one digit per token)
    steps: int = 400
    batch_size: int = 32  # sequences per optimizer step
    lr: float = 1e-3
    warmup_steps: int = 20
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-15
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    device: str = "auto"  # auto = the GPU when there is one, else cpu
    out_dir: str = "runs/sft"
    experiment: str = "m1-sft"


def load_sft_config(path: str | Path = "params.yaml", **overrides: Any) -> SFTConfig:
    section = dict((yaml.safe_load(Path(path).read_text()) or {}).get("sft") or {})
    section.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(section) - {f.name for f in dataclasses.fields(SFTConfig)})
    if unknown:
        raise ValueError(f"{path}: unknown sft settings {unknown}")
    for f in dataclasses.fields(SFTConfig):  # YAML reads "1e-3" (no dot) as a string
        if f.type in ("float", "int") and isinstance(section.get(f.name), str):
            section[f.name] = {"float": float, "int": int}[f.type](section[f.name])
    cfg = SFTConfig(**section)
    cfg.betas = tuple(cfg.betas)
    return cfg


def sft_pairs(cfg: SFTConfig) -> list[tuple[str, str]]:
    """(question, reply) pairs from ``cfg.data`` or from ``cfg.task``'s worked solutions."""
    if cfg.data:
        pairs = []
        for n, line in enumerate(Path(cfg.data).read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if "question" not in row or "response" not in row:
                    raise ValueError(f"{cfg.data}:{n}: a row needs 'question' and 'response'")
                pairs.append((row["question"], row["response"]))
        return pairs
    from tasks.rl.train import resolve_tasks

    task = resolve_tasks([cfg.task])[cfg.task]
    items = task.generate(cfg.examples, seed=cfg.seed, difficulty=cfg.difficulty)
    missing = [it["id"] for it in items if "solution" not in it.get("metadata", {})]
    if missing:
        raise ValueError(f"task {cfg.task!r}: item {missing[0]} has no metadata['solution'] to imitate; pass sft.data")
    return [(it["question"], it["metadata"]["solution"]) for it in items]


def train_sft(cfg: SFTConfig) -> dict[str, float]:
    """Train and save ``<out_dir>/policy``; returns the final metrics."""
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    out = Path(cfg.out_dir)
    pairs = sft_pairs(cfg)
    if cfg.init:
        model, tok = load_policy(cfg.init)
    else:
        from model.tokenizer import train_tokenizer

        tok = train_tokenizer((q + " " + r for q, r in pairs), cfg.vocab_size, out / "tokenizer")
        model = build_policy(cfg.model, tok)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    examples = []
    for q, r in pairs:
        prompt, reply = encode_prompt(tok, q), encode_reply(tok, r)
        examples.append((prompt + reply, len(prompt)))

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:  # linear warmup, cosine decay to 10%
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    tracker = RunTracker(out, experiment=cfg.experiment, run_name=f"sft-{cfg.task}", params=dataclasses.asdict(cfg))
    model.train()
    order: list[int] = []
    metrics: dict[str, float] = {}
    losses = []
    for step in tqdm(range(cfg.steps), desc="sft"):
        if len(order) < cfg.batch_size:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order += more
        batch = [examples[i] for i in order[: cfg.batch_size]]
        del order[: cfg.batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)  # [B, T]
        attn = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            attn[i, : len(seq)] = 1
            labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])  # reply tokens only
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=ids.to(device), attention_mask=attn.to(device), labels=labels.to(device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            metrics = {"sft/loss": sum(losses) / len(losses), "sft/grad_norm": float(norm), "sft/lr": lr_at(step)}
            tracker.log(step + 1, metrics)
            losses = []
    save_policy(model, tok, out / "policy")
    tracker.close()
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="params.yaml")
    ap.add_argument("--out-dir")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any other sft setting (YAML value)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    extra = {k: yaml.safe_load(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    print(train_sft(load_sft_config(args.config, out_dir=args.out_dir, steps=args.steps, **extra)))


if __name__ == "__main__":
    main()
