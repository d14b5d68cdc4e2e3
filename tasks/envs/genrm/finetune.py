"""Fine-tuning the judge, through the project's one trainer (``tasks.train.sft``): the stage's first
training and the RL stage's recalibrations on length-balanced pairs (report 4.2.2).

    judge_dir = train_judge(params, "runs/genrm/data/judge_train.jsonl", "runs/genrm/judge")
    judge_dir = recalibrate(params, judge_dir, "runs/rl/genrm/recal_000012", seed=12)
"""

from __future__ import annotations

from pathlib import Path

from tasks.envs.genrm.data import recalibration_examples, write_sft_jsonl
from tasks.envs.genrm.params import GenRMParams


def train_judge(p: GenRMParams, data: str | Path, out_dir: str | Path, *, init: str = "", steps: int | None = None,
                lr: float | None = None) -> Path:
    """Fine-tune a judge on judging examples (``write_sft_jsonl`` rows): a fresh ``genrm.train.model``
    or, with ``init``, an existing policy directory. Rerunning into ``out_dir`` resumes (the trainer's
    checkpoints). Returns the judge's policy directory."""
    from tasks.train.sft import SFTParams, train_sft

    t = p.train
    steps = steps or t.steps
    sft = SFTParams(model=t.model, init=init or t.init, data=str(data), vocab_size=t.vocab_size, steps=steps,
                    batch_size=t.batch_size, lr=lr or t.lr, warmup_steps=min(t.warmup_steps, steps // 4),
                    seed=p.seed, checkpoint_every=min(t.checkpoint_every, steps), device=t.device,
                    experiment=p.experiment)
    train_sft(sft, out_dir)
    return Path(out_dir) / "policy"


def recalibrate(p: GenRMParams, judge_dir: str | Path, out_dir: str | Path, seed: int) -> Path:
    """Continue ``judge_dir`` for ``train.recalibrate_steps`` on ``train.recalibrate_examples`` fresh
    length-balanced pairs (equal quality, different length: similar; longer but worse: worse), each
    in both positions. Returns the recalibrated judge's policy directory under ``out_dir``."""
    out = Path(out_dir)
    data = write_sft_jsonl(recalibration_examples(p.data, p.train.recalibrate_examples, seed), out / "recal.jsonl")
    return train_judge(p, data, out / "judge", init=str(judge_dir), steps=p.train.recalibrate_steps,
                       lr=p.train.recalibrate_lr)
