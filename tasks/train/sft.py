"""Supervised fine-tuning on chat-formatted (question, response) pairs (report section 2, at toy scale).

    python -m tasks.train.sft --output runs/sft [--params params.yaml] [--set steps=300]

Trains any causal LM, our M1 model or a Hugging Face one, built fresh from a spec (``sft.model``) or
loaded from a policy directory (``sft.init``), on the worked solutions of a task's items (items whose
``metadata["solution"]`` holds a reply in the chat format) or on a JSONL file of
``{"question", "response"}`` rows. The loss covers reply tokens only. Writes ``DIR/policy/``
(HF-format weights + tokenizer, what ``tasks.train.rl.train`` starts from), ``DIR/metrics.jsonl``
and MLflow metrics.

Rerunning into the same ``DIR`` resumes: every ``checkpoint_every`` steps ``DIR/checkpoints/step_*``
holds the weights, the optimizer, the data order still to come, the RNG states and the MLflow run,
so a killed run continues where its last checkpoint left it and ends with the same weights.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.train.checkpoint import load_state, made_by, resume_from, rng_state, save_checkpoint, set_rng_state
from tasks.train.policy import build_policy, encode_prompt, encode_reply, load_policy, resolve_device, save_policy
from tasks.train.tracking import RunTracker


@dataclass
class SFTParams(Params):
    """``sft``: the base policy and how it learns the reply format and the worked steps.
    Units: ``batch_size`` sequences per optimizer step."""

    SECTION: ClassVar[str] = "sft"
    model: dict[str, Any] = param(default_factory=lambda: {"arch": "m1", "preset": "tiny"},
                                  help="policy spec: {arch: m1, preset: tiny} or {arch: llama | qwen2, "
                                       "<transformers config fields>}")
    init: str = param("", help="a policy directory to continue from instead of a fresh model")
    task: str = param("arithmetic", help="registered task whose items' metadata.solution is the reply imitated")
    difficulty: int = param(2, ge=1, help="the task's difficulty (arithmetic: digits per operand; the tiny "
                                          "model's lightning layers could not learn 3-digit column lookups)")
    data: str = param("", help="JSONL of {question, response}; overrides task when set")
    examples: int = param(4000, ge=1, help="task items generated for training")
    vocab_size: int = param(263, ge=263, help="fresh tokenizer; 263 = 256 bytes + 7 specials: no merges, one "
                                              "digit per token")
    steps: int = param(400, ge=1, help="optimizer steps")
    batch_size: int = param(32, ge=1, help="sequences per optimizer step")
    lr: float = param(1e-3, gt=0.0, help="peak learning rate (linear warmup, cosine decay to 10%)")
    warmup_steps: int = param(20, ge=0, help="linear warmup steps")
    betas: tuple[float, float] = param((0.9, 0.95), ge=0.0, lt=1.0, help="AdamW betas (report section 3.2)")
    adam_eps: float = param(1e-15, gt=0.0, help="AdamW eps (report section 3.2)")
    weight_decay: float = param(0.0, ge=0.0, help="AdamW weight decay")
    grad_clip: float = param(1.0, gt=0.0, help="gradient-norm clip")
    seed: int = param(0, help="data, initialisation and data-order seed")
    log_every: int = param(10, ge=1, help="steps per logged metrics line (loss averaged over them)")
    checkpoint_every: int = param(50, ge=1, help="steps per checkpoint (resume point)")
    keep_checkpoints: int = param(2, ge=1, help="newest checkpoints kept")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")
    experiment: str = param("m1-sft", help="MLflow experiment")

    def check(self) -> None:
        if "arch" not in self.model:
            raise self.fail("model", self.model, "a mapping with arch: m1 | llama | qwen2")
        if self.warmup_steps >= self.steps:
            raise self.fail("warmup_steps", self.warmup_steps, f"an integer < steps ({self.steps})")


def sft_pairs(params: SFTParams) -> list[tuple[str, str]]:
    """(question, reply) pairs from ``params.data`` or from ``params.task``'s worked solutions."""
    if params.data:
        pairs = []
        for n, line in enumerate(Path(params.data).read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if "question" not in row or "response" not in row:
                    raise ValueError(f"{params.data}:{n}: a row needs 'question' and 'response'")
                pairs.append((row["question"], row["response"]))
        return pairs
    from tasks.envs.registry import get_tasks

    task = get_tasks([params.task], where="sft.task")[params.task]
    items = task.generate(params.examples, seed=params.seed, difficulty=params.difficulty)
    missing = [it["id"] for it in items if "solution" not in it.get("metadata", {})]
    if missing:
        raise ValueError(f"task {params.task!r}: item {missing[0]} has no metadata['solution'] to imitate; pass sft.data")
    return [(it["question"], it["metadata"]["solution"]) for it in items]


def _lr_at(params: SFTParams, step: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < params.warmup_steps:
        return params.lr * (step + 1) / params.warmup_steps
    t = (step - params.warmup_steps) / max(1, params.steps - params.warmup_steps)
    return params.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def _batch(examples: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """Right-padded ids, attention mask and labels (reply tokens only) of a batch."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)  # [B, T]
    attn = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (seq, n_prompt) in enumerate(examples):
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
    return ids, attn, labels


def train_sft(params: SFTParams, out_dir: str | Path) -> dict[str, float]:
    """Train (or resume) into ``out_dir`` and save ``out_dir/policy``; returns the last logged metrics."""
    out = Path(out_dir)
    # checkpoints count only if these params and inputs made them; otherwise start afresh, saying why
    made = made_by({"sft": params}, {"init": params.init, "data": params.data})
    last = resume_from(out / "checkpoints", made)
    torch.manual_seed(params.seed)
    pairs = sft_pairs(params)
    if params.init:
        model, tok = load_policy(params.init)
    else:
        from model.tokenizer import load_tokenizer, train_tokenizer

        if last is not None and (out / "tokenizer" / "tokenizer.json").exists():  # a resumed run keeps its tokenizer
            tok = load_tokenizer(out / "tokenizer")
        else:
            tok = train_tokenizer((q + " " + r for q, r in pairs), params.vocab_size, out / "tokenizer")
        model = build_policy(params.model, tok)
    device = resolve_device(params.device)
    model.to(device)
    examples = []
    for q, r in pairs:
        prompt, reply = encode_prompt(tok, q), encode_reply(tok, r)
        examples.append((prompt + reply, len(prompt)))
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, betas=params.betas, eps=params.adam_eps,
                            weight_decay=params.weight_decay)

    rng = random.Random(params.seed)
    state: dict[str, Any] = {"step": 0, "order": [], "losses": [], "run_id": None}
    if last is not None:
        model.load_state_dict(torch.load(last / "model.pt", weights_only=True))
        opt.load_state_dict(torch.load(last / "optimizer.pt", weights_only=True))
        state = load_state(last)
        set_rng_state(state["rng"])
        rng.setstate(state["data_rng"])

    def write_trainer(path: Path) -> None:
        torch.save(model.state_dict(), path / "model.pt")
        torch.save(opt.state_dict(), path / "optimizer.pt")

    tracker = RunTracker(out, experiment=params.experiment, run_name=f"sft-{params.task}", params=params.to_dict(),
                         made=made, run_id=state["run_id"], resume_step=state["step"])
    model.train()
    order, losses = state["order"], state["losses"]
    metrics: dict[str, float] = {}
    for step in tqdm(range(state["step"], params.steps), initial=state["step"], total=params.steps, desc="sft"):
        if len(order) < params.batch_size:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order += more
        batch = [examples[i] for i in order[: params.batch_size]]
        del order[: params.batch_size]
        ids, attn, labels = (x.to(device) for x in _batch(batch, tok.pad_token_id))
        for g in opt.param_groups:
            g["lr"] = _lr_at(params, step)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % params.log_every == 0 or step + 1 == params.steps:
            metrics = {"sft/loss": sum(losses) / len(losses), "sft/grad_norm": float(norm), "sft/lr": _lr_at(params, step)}
            tracker.log(step + 1, metrics)
            losses.clear()
        if (step + 1) % params.checkpoint_every == 0 or step + 1 == params.steps:
            state = {"step": step + 1, "order": order, "losses": losses, "run_id": tracker.run_id,
                     "rng": rng_state(), "data_rng": rng.getstate()}
            save_checkpoint(out / "checkpoints", step + 1, state, write_trainer, made=made, keep=params.keep_checkpoints)
    save_policy(model, tok, out / "policy")
    tracker.close()
    return metrics


PARAMS = {"sft": SFTParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, prog="python -m tasks.train.sft").parse_args(argv)
    torch.set_num_threads(1)
    print(train_sft(load(args.params, PARAMS, args.set)["sft"], args.output))


if __name__ == "__main__":
    main()
