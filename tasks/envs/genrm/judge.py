"""The generative judge: a causal LM (our M1 model or any Hugging Face one) that writes verdicts.

    judge = Judge.load("runs/genrm/judge", JudgeParams())
    judge.grade(["47+38="], ["85"], ["<think>...</think><answer>85</answer>"])   # [Verdict(5)]
    judge.against(["tell me about bees."], [reply], [reference])                 # [PairResult(...)]

Judging is batched: prompts are sorted by length and decoded greedily ``batch_size`` at a time
through ``model.generation.TorchEngine``, so one call judges a whole RL step. ``stats`` counts
prompts, malformed verdicts (by reason; the first of each reason is logged) and seconds, from
which ``throughput`` (judging prompts per second) is logged.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tasks.envs.genrm.params import JudgeParams
from tasks.envs.genrm.verdict import PairResult, Verdict, grade_prompt, pair_prompt, parse_grade, parse_pair

log = logging.getLogger(__name__)


@dataclass
class JudgeStats:
    """Running counts of one judge: prompts judged, malformed verdicts by reason, time spent."""

    prompts: int = 0
    malformed: int = 0
    seconds: float = 0.0
    prompt_tokens: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        """Judging prompts per second."""
        return self.prompts / self.seconds if self.seconds else 0.0

    def as_metrics(self, prefix: str = "judge/") -> dict[str, float]:
        return {f"{prefix}prompts": float(self.prompts), f"{prefix}malformed": float(self.malformed),
                f"{prefix}malformed_rate": self.malformed / self.prompts if self.prompts else 0.0,
                f"{prefix}prompts_per_s": self.throughput,
                f"{prefix}tokens_per_s": self.prompt_tokens / self.seconds if self.seconds else 0.0}


class Judge:
    """Batched generative judging in both modes (``grade``, ``compare`` / ``against``)."""

    def __init__(self, model: torch.nn.Module, tokenizer, params: JudgeParams):
        from model.generation import SamplingParams
        from model.sharded import make_engine

        self.model, self.tok, self.params = model.eval(), tokenizer, params
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.engine = make_engine(model, pad_token_id=pad)
        self.sampling = SamplingParams(max_new_tokens=params.max_new_tokens, temperature=0.0,
                                       stop_token_ids=(tokenizer.eos_token_id,))
        self.stats = JudgeStats()

    @classmethod
    def load(cls, path: str | Path, params: JudgeParams) -> Judge:
        """A judge saved as a policy directory (``tasks.train.policy.save_policy``)."""
        from tasks.train.policy import load_policy, resolve_device

        model, tok = load_policy(path)
        return cls(model.to(resolve_device(params.device)), tok, params)

    def swap(self, path: str | Path) -> None:
        """Judge with the weights of ``path`` from now on (a recalibrated judge); counts carry on."""
        stats = self.stats
        fresh = Judge.load(path, self.params)
        self.__dict__.update(fresh.__dict__)
        self.stats = stats

    def reply(self, prompts: list[str]) -> list[str]:
        """The judge's reply to each judging prompt (greedy, batched, longest first)."""
        from tasks.train.policy import encode_prompt

        if not prompts:
            return []
        t0 = time.perf_counter()
        cap = self.params.max_prompt_tokens
        ids = [encode_prompt(self.tok, p)[-cap:] for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out: list[str] = [""] * len(ids)
        step = self.params.batch_size * self.engine.workers  # a batch for each worker
        with torch.no_grad():
            for lo in range(0, len(order), step):
                rows = order[lo : lo + step]
                gen = self.engine.generate([ids[i] for i in rows], self.sampling)
                for i, toks in zip(rows, gen.tokens):
                    out[i] = self.tok.decode(toks, skip_special_tokens=False)
        self.stats.prompts += len(prompts)
        self.stats.prompt_tokens += sum(len(x) for x in ids)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _count(self, verdicts: list[Verdict], mode: str) -> list[Verdict]:
        for v in verdicts:
            if not v.ok:
                reason = v.error.split(":")[0]
                if not self.stats.reasons[f"{mode}: {reason}"]:
                    log.warning("malformed %s verdict (%s); counted, not scored", mode, v.error)
                self.stats.reasons[f"{mode}: {reason}"] += 1
                self.stats.malformed += 1
        return verdicts

    def grade(self, questions: list[str], references: list[str], responses: list[str]) -> list[Verdict]:
        """Grade 1-5 of each response's agreement with its reference (ground-truth mode)."""
        prompts = [grade_prompt(q, r, a) for q, r, a in zip(questions, references, responses, strict=True)]
        return self._count([parse_grade(t) for t in self.reply(prompts)], "grade")

    def compare(self, questions: list[str], firsts: list[str], seconds: list[str]) -> list[Verdict]:
        """One-position verdicts: 1 / 0 / -1 when the first answer is better / similar / worse."""
        prompts = [pair_prompt(q, a, b) for q, a, b in zip(questions, firsts, seconds, strict=True)]
        return self._count([parse_pair(t) for t in self.reply(prompts)], "pair")

    def against(self, questions: list[str], responses: list[str], references: list[str]) -> list[PairResult]:
        """Each response against its reference in both positions, in one batch (no-ground-truth mode)."""
        n = len(questions)
        v = self.compare(list(questions) * 2, list(responses) + list(references), list(references) + list(responses))
        return [PairResult(v[i], v[n + i]) for i in range(n)]
