"""RL settings: one dataclass, read from params.yaml's ``rl:`` section (see the comments there).

Batch units: ``prompts_per_step`` prompts per generation batch, global across data-parallel ranks;
``samples_per_prompt`` responses each (G); the batch's ``prompts_per_step * samples_per_prompt``
sequences are split into ``updates_per_batch`` minibatches, one optimizer step each.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tasks.rl.losses import ALGORITHMS, NORMALIZATIONS


@dataclass
class RLConfig:
    algorithm: str = "cispo"
    policy: str = "runs/sft/policy"  # HF-format dir with weights and tokenizer (tasks.sft's output)
    out_dir: str = ""  # empty = runs/rl/<algorithm>
    seed: int = 0
    steps: int = 60  # generation batches
    prompts_per_step: int = 8
    samples_per_prompt: int = 8
    updates_per_batch: int = 16
    lr: float = 3e-6
    betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-15
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    trainable: str = "all"  # all | head (output head and final norm only; see train.freeze_body)
    eps_low: float = 1.0  # IS weight clipped to [1 - eps_low, 1 + eps_high]
    eps_high: float = 0.28
    trust_region_mask: bool = False
    normalization: str = "token"
    max_new_tokens: int = 48
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_n: int = 3000
    repetition_p: float = 0.99
    dynamic_sampling: bool = True
    max_sampling_rounds: int = 3
    overlong_buffer: int = 8
    overlong_penalty: float = 1.0
    tasks: dict[str, dict[str, Any]] = field(default_factory=lambda: {"arithmetic": {"difficulty": 2, "weight": 1.0}})
    eval_every: int = 5
    eval_prompts: int = 64
    eval_samples: int = 2
    eval_temperature: float = 1.0
    eval_top_p: float = 0.95
    eval_seed: int = 1_000_000
    checkpoint_every: int = 5
    keep_checkpoints: int = 2
    device: str = "auto"  # auto | cpu | cuda
    train_engine: str = "torch"  # torch | deepspeed
    zero_stage: int = 2
    rollout_engine: str = "torch"  # torch | vllm
    experiment: str = "m1-rl"
    run_name: str = ""

    def __post_init__(self):
        for f in dataclasses.fields(self):  # YAML reads "1e-5" (no dot) as a string
            if f.type in ("float", "int") and isinstance(getattr(self, f.name), str):
                try:
                    setattr(self, f.name, {"float": float, "int": int}[f.type](getattr(self, f.name)))
                except ValueError as e:
                    raise ValueError(f"rl.{f.name} must be a number, got {getattr(self, f.name)!r}") from e
        self.betas = tuple(self.betas)
        self.out_dir = self.out_dir or f"runs/rl/{self.algorithm}"
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"rl.algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"rl.normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.trainable not in ("all", "head"):
            raise ValueError(f"rl.trainable must be all or head, got {self.trainable!r}")
        if self.zero_stage not in (0, 1, 2):
            raise ValueError(f"rl.zero_stage must be 0, 1 or 2 (stage 3 shards the weights generation needs), got {self.zero_stage}")
        if self.train_engine not in ("torch", "deepspeed"):
            raise ValueError(f"rl.train_engine must be torch or deepspeed, got {self.train_engine!r}")
        if self.rollout_engine not in ("torch", "vllm"):
            raise ValueError(f"rl.rollout_engine must be torch or vllm, got {self.rollout_engine!r}")
        sequences = self.prompts_per_step * self.samples_per_prompt
        if sequences % self.updates_per_batch:
            raise ValueError(
                f"rl: prompts_per_step * samples_per_prompt = {sequences} sequences must divide into "
                f"updates_per_batch = {self.updates_per_batch} minibatches"
            )
        if self.overlong_buffer > self.max_new_tokens:
            raise ValueError(f"rl.overlong_buffer ({self.overlong_buffer}) exceeds max_new_tokens ({self.max_new_tokens})")
        if not self.tasks:
            raise ValueError("rl.tasks is empty: name at least one task")

    def check_world(self, world_size: int) -> None:
        """Data parallelism splits the prompts: each rank takes ``prompts_per_step / world_size``."""
        if self.prompts_per_step % world_size:
            raise ValueError(f"rl.prompts_per_step ({self.prompts_per_step}) must divide by world size {world_size}")
        per_rank = self.prompts_per_step // world_size * self.samples_per_prompt
        if per_rank % self.updates_per_batch:
            raise ValueError(
                f"rl: {per_rank} sequences per rank must divide into updates_per_batch = {self.updates_per_batch}"
            )


def load_config(path: str | Path = "params.yaml", **overrides: Any) -> RLConfig:
    """``RLConfig`` from the ``rl:`` section of ``path``; the chosen algorithm's entry under
    ``rl.algorithms`` applies next, then ``overrides`` (``None`` values are ignored)."""
    section = dict((yaml.safe_load(Path(path).read_text()) or {}).get("rl") or {})
    per_algorithm = section.pop("algorithms", {}) or {}
    algorithm = overrides.get("algorithm") or section.get("algorithm", "cispo")
    section.update(per_algorithm.get(algorithm, {}))
    section.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(RLConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"{path}: unknown rl settings {unknown}")
    return RLConfig(**section)
