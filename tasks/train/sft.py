"""Supervised fine-tuning on chat-formatted (question, response) pairs (report section 2, at toy scale).

    python -m tasks.train.sft --output runs/sft [--params params.yaml] [--set steps=300]

Trains any causal LM, our M1 model or a Hugging Face one, built fresh from a spec (``sft.model``) or
loaded from a policy directory (``sft.init``), on the worked solutions of the task mix ``sft.tasks``
(each task's items carry ``metadata["solution"]``, a reply in the chat format the verifiers read:
``<think>steps</think><answer>...</answer>``), or on a JSONL file of ``{"question", "response"}``
rows. Questions in the evaluation tenth (``tasks.envs.heldout``) are never imitated. The loss
covers reply tokens only. Writes ``DIR/policy/``
(HF-format weights + tokenizer, what ``tasks.train.rl.train`` starts from), ``DIR/metrics.jsonl``
and MLflow metrics.

Rerunning into the same ``DIR`` resumes: every ``checkpoint_every`` steps ``DIR/checkpoints/step_*``
holds the weights, the optimizer, the data order still to come, the RNG states and the MLflow run,
so a killed run continues where its last checkpoint left it and ends with the same weights.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from model.sharded import ShardedBackward, backward_jobs
from tasks.config import Params, exits_cleanly, load, param, stage_parser
from tasks.train.checkpoint import load_state, made_by, resume_from, rng_state, save_checkpoint, set_rng_state
from tasks.train.policy import build_policy, encode_prompt, encode_reply, load_policy, resolve_device, save_policy
from tasks.train.tracking import RunTracker


@dataclass
class SFTTask(Params):
    """``sft.tasks.<name>``: one task of the SFT mix."""

    SECTION: ClassVar[str] = "sft.tasks.*"
    levels: tuple[int, ...] = param(ge=1, help="difficulty levels, examples spread evenly over them")
    examples: int = param(ge=1, help="worked solutions generated (held-out questions are then dropped)")


def _default_mix() -> dict[str, SFTTask]:
    """The tiny preset's mix: arithmetic, procedural math, code_io and the SynLogic families whose
    worked solutions are short enough for it (LOG.md, issue 11)."""
    return {
        "arithmetic": SFTTask(levels=(2,), examples=2500),
        "math": SFTTask(levels=(1,), examples=300),
        "code_io": SFTTask(levels=(1, 2), examples=500),
        "dyck_languages": SFTTask(levels=(1, 2), examples=800),
        "object_counting": SFTTask(levels=(1, 2, 3), examples=1800),
        "object_properties": SFTTask(levels=(1, 2), examples=900),
    }


@dataclass
class SFTParams(Params):
    """``sft``: the base policy and how it learns the reply format and the worked steps.
    Units: ``batch_size`` sequences per optimizer step."""

    SECTION: ClassVar[str] = "sft"
    model: dict[str, Any] = param(default_factory=lambda: {"arch": "m1", "preset": "tiny"},
                                  help="policy spec: {arch: m1, preset: tiny} or {arch: llama | qwen2, "
                                       "<transformers config fields>}")
    init: str = param("", help="a policy directory to continue from instead of a fresh model")
    tasks: dict[str, SFTTask] = param(default_factory=_default_mix,
                                      help="the mix: task -> {levels, examples}; each item's metadata.solution is "
                                           "the reply imitated (arithmetic at 2 digits: the tiny model's lightning "
                                           "layers could not learn 3-digit column lookups)")
    item_seed: int = param(7, help="seed of the generated items; keep it apart from synlogic.generate.seed and "
                                   "difficulty.generated seeds so SFT and RL items differ")
    data: str = param("", help="JSONL of {question, response}; replaces tasks when set")
    vocab_size: int = param(1024, ge=263, help="fresh BPE tokenizer (the tiny preset's size); 263 = 256 bytes + 7 "
                                               "specials, no merges")
    split_digits: bool = param(True, help="every digit its own token (merges compress words, never numbers)")
    steps: int = param(300, ge=1, help="optimizer steps")
    batch_size: int = param(32, ge=1, help="sequences per optimizer step")
    micro_batches: int = param(4, ge=1, help="each batch runs as this many micro-batches of similar length with "
                                             "gradients accumulated: the same update as the whole batch, less padding")
    lr: float = param(4e-3, gt=0.0, help="peak learning rate (linear warmup, cosine decay to 10%); 4e-3 learned the "
                                          "mix fastest of 1e-3..6e-3 on the tiny preset (LOG.md, issue 11)")
    warmup_steps: int = param(10, ge=0, help="linear warmup steps")
    betas: tuple[float, float] = param((0.9, 0.95), ge=0.0, lt=1.0, help="AdamW betas (report section 3.2)")
    adam_eps: float = param(1e-15, gt=0.0, help="AdamW eps (report section 3.2)")
    weight_decay: float = param(0.0, ge=0.0, help="AdamW weight decay")
    grad_clip: float = param(1.0, gt=0.0, help="gradient-norm clip")
    seed: int = param(0, help="data, initialisation and data-order seed")
    log_every: int = param(10, ge=1, help="steps per logged metrics line (loss averaged over them)")
    checkpoint_every: int = param(50, ge=1, help="steps per checkpoint (resume point)")
    keep_checkpoints: int = param(2, ge=1, help="newest checkpoints kept")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")
    threads: int = param(2, ge=1, help="CPU threads of torch: a fixed number, so results do not depend on the machine's cores")
    workers: int = param(1, ge=1, help="CPU: processes of one thread each that run a step's micro-batches side by side "
                                       "(model.sharded.ShardedBackward; 2: 1.27x a step, bench/results/sft_workers.md); "
                                       "1 = this process alone on `threads` threads. The tiny default keeps 1: with 2 "
                                       "its policies differ in the last float bits and the eval table lost a family (LOG.md)")
    experiment: str = param("m1-sft", help="MLflow experiment")

    def check(self) -> None:
        if "arch" not in self.model:
            raise self.fail("model", self.model, "a mapping with arch: m1 | llama | qwen2")
        if self.warmup_steps >= self.steps:
            raise self.fail("warmup_steps", self.warmup_steps, f"an integer < steps ({self.steps})")
        if not self.tasks and not self.data:
            raise self.fail("tasks", self.tasks, "at least one task (or sft.data)")


def sft_pairs(params: SFTParams) -> list[tuple[str, str]]:
    """(question, reply) pairs from ``params.data`` or the worked solutions of the ``params.tasks`` mix,
    held-out questions left out."""
    if params.data:
        pairs = []
        for n, line in enumerate(Path(params.data).read_text().splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if "question" not in row or "response" not in row:
                    raise ValueError(f"{params.data}:{n}: a row needs 'question' and 'response'")
                pairs.append((row["question"], row["response"]))
        return pairs
    from tasks.envs.heldout import is_held_out
    from tasks.envs.registry import get_tasks

    pairs = []
    for name, task in get_tasks(params.tasks, where="sft.tasks").items():
        spec = params.tasks[name]
        lo, hi = task.difficulty_range
        if not all(lo <= lv <= hi for lv in spec.levels):
            raise params.fail(f"tasks.{name}.levels", list(spec.levels), f"levels inside the task's range [{lo}, {hi}]")
        for i, lv in enumerate(spec.levels):
            count = spec.examples // len(spec.levels) + (i < spec.examples % len(spec.levels))
            items = task.generate(count, seed=params.item_seed, difficulty=lv)
            missing = [it["id"] for it in items if "solution" not in it.get("metadata", {})]
            if missing:
                raise params.fail(f"tasks.{name}", spec.to_dict(), f"a task whose items carry metadata['solution'] "
                                                                   f"(item {missing[0]} has none); or pass sft.data")
            pairs += [(it["question"], it["metadata"]["solution"]) for it in items if not is_held_out(it["question"])]
    return pairs


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


def _piece_loss(model: torch.nn.Module, ids: torch.Tensor, attn: torch.Tensor, labels: torch.Tensor,
                weight: float) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=attn, labels=labels).loss * weight


def _deal(pieces: list[list[tuple[list[int], int]]], shards: int) -> list[list[int]]:
    """Indices of the pieces each shard runs: the largest (padded tokens) first, each to the shard
    with the fewest tokens so far."""
    cost = [len(p) * max(len(seq) for seq, _ in p) for p in pieces]
    load, dealt = [0] * shards, [[] for _ in range(shards)]
    for i in sorted(range(len(pieces)), key=lambda i: -cost[i]):
        k = load.index(min(load))
        dealt[k].append(i)
        load[k] += cost[i]
    return [sorted(d) for d in dealt if d]


def accumulate(model: torch.nn.Module, batch: list[tuple[list[int], int]], micro_batches: int, pad_id: int,
               device: torch.device, pool: ShardedBackward | None = None) -> float:
    """Backward the batch's mean reply-token loss through ``micro_batches`` length-sorted pieces
    (each piece's mean weighted by its share of the reply tokens: the whole batch's gradient, with
    short sequences no longer padded to the longest); returns the loss. With ``pool`` (CPU) the
    pieces, at least one per worker, are dealt out to its processes and run side by side."""
    batch = sorted(batch, key=lambda ex: len(ex[0]))
    n_pieces = max(micro_batches, pool.workers if pool else 1)
    cuts = [len(batch) * j // n_pieces for j in range(n_pieces + 1)]
    pieces = [batch[lo:hi] for lo, hi in zip(cuts, cuts[1:]) if hi > lo]
    counted = [sum(len(seq) - max(n_prompt, 1) for seq, n_prompt in p) for p in pieces]  # predicted reply tokens
    total = sum(counted)
    jobs = [(*(x.to(device) for x in _batch(piece, pad_id)), n / total) for piece, n in zip(pieces, counted)]
    if pool is None:
        return backward_jobs(model, _piece_loss, jobs)
    return pool.backward(_piece_loss, [[jobs[i] for i in shard] for shard in _deal(pieces, pool.workers)])


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
            tok = train_tokenizer((q + " " + r for q, r in pairs), params.vocab_size, out / "tokenizer",
                                  split_digits=params.split_digits)
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

    tracker = RunTracker(out, experiment=params.experiment, run_name="sft", params=params.to_dict(),
                         made=made, run_id=state["run_id"], resume_step=state["step"])
    model.train()
    pool = ShardedBackward(model, workers=params.workers) if params.workers > 1 and device.type == "cpu" else None
    order, losses = state["order"], state["losses"]
    metrics: dict[str, float] = {}
    with contextlib.closing(pool) if pool else contextlib.nullcontext():
        for step in tqdm(range(state["step"], params.steps), initial=state["step"], total=params.steps, desc="sft"):
            if len(order) < params.batch_size:
                more = list(range(len(examples)))
                rng.shuffle(more)
                order += more
            batch = [examples[i] for i in order[: params.batch_size]]
            del order[: params.batch_size]
            for g in opt.param_groups:
                g["lr"] = _lr_at(params, step)
            opt.zero_grad(set_to_none=True)
            loss = accumulate(model, batch, params.micro_batches, tok.pad_token_id, device, pool)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
            opt.step()
            losses.append(loss)
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
    params = load(args.params, PARAMS, args.set)["sft"]
    torch.set_num_threads(params.threads)
    print(train_sft(params, args.output))


if __name__ == "__main__":
    main()
