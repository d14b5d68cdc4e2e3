"""``rl``: the RL stage's settings (report section 3), one dataclass per concern of the section.

Batch units: ``prompts_per_step`` prompts per generation batch, global across data-parallel ranks;
``samples_per_prompt`` responses each (G); the batch's prompt groups are split into
``updates_per_batch`` minibatches of whole groups, one optimizer step each, so every minibatch's
advantages sum to zero. Learning rates are AdamW's step sizes per optimizer update (peak, reached
after ``warmup_updates`` updates), one per parameter group: ``lr_head`` for the output head and the
final norm, ``lr`` for every other weight.

The objective's own settings (clip range, normalization, DAPO's sampling tricks) live per algorithm
under ``rl.algorithms.<name>``; ``rl.algorithm`` picks one and ``RLParams.algo`` is its entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from tasks.config import Params, param
from tasks.train.rl.losses import ALGORITHMS, NORMALIZATIONS


@dataclass
class AlgorithmParams(Params):
    """``rl.algorithms.<name>``: one objective's settings. The IS weight r = pi/pi_old is clipped to
    [1 - eps_low, 1 + eps_high] (report Eq. 5; not an absolute cap)."""

    SECTION: ClassVar[str] = "rl.algorithms.*"  # one of its fields, see Algorithms
    eps_low: float = param(help="lower clip: r >= 1 - eps_low (CISPO: large = no lower bound)")
    eps_high: float = param(help="upper clip: r <= 1 + eps_high (the one CISPO tunes)")
    normalization: str = param(choices=NORMALIZATIONS, help="token | sample | combined = (token + sample) / 2")
    trust_region_mask: bool = param(False, help="Eq. 6-7's token mask on top of CISPO")
    dynamic_sampling: bool = param(True, help="DAPO: drop groups whose rewards are all equal, draw more prompts")
    overlong_penalty: float = param(1.0, ge=0.0, help="DAPO soft overlong penalty: reward falls linearly to "
                                                      "-overlong_penalty over rl.overlong_buffer tokens; 0 = off")


@dataclass
class Algorithms(Params):
    """``rl.algorithms``: each objective's settings; ``rl.algorithm`` picks one."""

    SECTION: ClassVar[str] = "rl.algorithms"
    cispo: AlgorithmParams = param(
        default_factory=lambda: AlgorithmParams(eps_low=1.0, eps_high=0.28, normalization="token"),
        help="CISPO: clipped, detached IS weight (report Eq. 4-5); no lower bound, eps_high tuned")
    grpo: AlgorithmParams = param(
        default_factory=lambda: AlgorithmParams(eps_low=0.2, eps_high=0.2, normalization="sample",
                                                dynamic_sampling=False, overlong_penalty=0.0),
        help="the report's GRPO baseline: PPO clip 0.2, per-sequence mean, no DAPO sampling tricks")
    dapo: AlgorithmParams = param(
        default_factory=lambda: AlgorithmParams(eps_low=0.2, eps_high=0.28, normalization="token"),
        help="DAPO: clip-higher, token-level normalization, dynamic sampling, overlong penalty")


@dataclass
class Phase(Params):
    """``rl.curriculum[i]``: a phase of the curriculum (``tasks.train.rl.data``)."""

    SECTION: ClassVar[str] = "rl.curriculum[]"
    steps: int = param(ge=1, help="steps in this phase; the last phase runs to the end of training")
    weights: dict[str, float] = param(help="task -> weight of each of its rows in the RL data: a prompt is drawn from "
                                            "task t with probability ~ weight[t] x rows of t (1.0 everywhere = the "
                                            "data's own proportions)")

    def check(self) -> None:
        if not self.weights or any(w < 0 for w in self.weights.values()) or not any(self.weights.values()):
            raise self.fail("weights", self.weights, "a mapping of task names to weights >= 0, one of them > 0")


#: rule-verified tasks of the RL data; the report starts with these alone
RULE_VERIFIED = ("arithmetic", "math", "code_io", "dyck_languages", "object_counting", "object_properties")


#: GenRM-judged general tasks (report 4.2); RL draws them when it is given the genrm stage's output
GENERAL = ("open_prompt", "instruct")


def _default_curriculum() -> tuple[Phase, ...]:
    """The report's order (4.3): rule-verified tasks only, each row counted once, for 30 steps; then
    the GenRM-judged general tasks mixed in, each of their rows at 0.4 (the tiny default's genrm pool
    of 96 general items against about 110 rule-verified rows: a quarter of the prompts). Without
    ``--genrm`` the second phase has no general rows and draws exactly as the first."""
    rule = {t: 1.0 for t in RULE_VERIFIED}
    return (Phase(steps=30, weights=rule), Phase(steps=10, weights={**rule, **{t: 0.4 for t in GENERAL}}))


@dataclass
class VLLMParams(Params):
    """``rl.vllm``: the vLLM rollout engine (``rl.rollout_engine: vllm``; GPU only, the gpu extra)."""

    SECTION: ClassVar[str] = "rl.vllm"
    gpu_memory_utilization: float = param(0.3, gt=0.0, le=1.0, help="share of the GPU vLLM takes (weights, KV "
                                                                     "cache, lightning states); the trainer has the rest")
    max_model_len: int = param(4096, ge=16, help="longest prompt + reply vLLM serves (sizes its KV cache)")
    max_num_seqs: int = param(256, ge=1, help="sequences vLLM decodes at once")
    cuda_graphs: bool = param(True, help="replay decode steps as CUDA graphs; false = eager (debugging)")
    prefill: str = param("m1", choices=("m1", "vllm"), help="lightning prefill kernel: m1 = the trainer's "
                                                             "(any head dim), vllm = vLLM's (head_dim % 64 == 0)")


@dataclass
class RLParams(Params):
    """``rl``: CISPO (or GRPO / DAPO) on verifiable tasks."""

    SECTION: ClassVar[str] = "rl"
    algorithm: str = param("cispo", choices=ALGORITHMS, help="the objective; its settings: rl.algorithms.<name>")
    seed: int = param(0, help="prompt stream, sampling and minibatch seed")
    steps: int = param(40, ge=1, help="generation batches (tiny default: 4.6-6.5 min on 2 CPU cores, by the hour; LOG.md)")
    prompts_per_step: int = param(16, ge=1, help="prompts per generation batch, global across ranks")
    samples_per_prompt: int = param(8, ge=2, help="responses per prompt (the group G)")
    updates_per_batch: int = param(4, ge=1, help="minibatches of whole prompt groups per generation batch, one "
                                                 "optimizer update each (the report uses 16 off-policy updates)")
    lr: float = param(1e-6, ge=0.0, help="AdamW peak rate of every weight outside the head group; 0 freezes them "
                                         "(the tiny preset's body tolerates about 1e-6; LOG.md rl, issue 12)")
    lr_head: float = param(1e-3, ge=0.0, help="AdamW peak rate of the head group: the output head "
                                              "(get_output_embeddings) and the final norm; 0 freezes them")
    warmup_updates: int = param(10, ge=0, help="optimizer updates of linear warmup to the peak rates: with eps "
                                               "1e-15 an un-warmed first update is lr * sign(g) on every weight")
    betas: tuple[float, float] = param((0.9, 0.95), ge=0.0, lt=1.0, help="AdamW betas (report section 3.2; VeRL's "
                                                                         "0.9/0.999 with eps 1e-8 diverged)")
    adam_eps: float = param(1e-15, gt=0.0, help="AdamW eps (report section 3.2)")
    weight_decay: float = param(0.0, ge=0.0, help="AdamW weight decay")
    grad_clip: float = param(1.0, gt=0.0, help="gradient-norm clip")
    max_new_tokens: int = param(96, ge=1, help="rollout reply budget (tiny default: the worked solutions of the "
                                               "levels SFT teaches are under 90 tokens)")
    temperature: float = param(1.0, gt=0.0, help="rollout sampling temperature")
    top_p: float = param(1.0, gt=0.0, le=1.0, help="rollout nucleus sampling")
    repetition_n: int = param(3000, ge=1, help="early truncation: N consecutive tokens each with p > repetition_p "
                                               "(report section 3.2)")
    repetition_p: float = param(0.99, ge=0.0, le=1.0, help="see repetition_n")
    max_sampling_rounds: int = param(3, ge=1, help="dynamic sampling: bound on prompt-drawing rounds per step")
    overlong_buffer: int = param(8, ge=0, help="DAPO overlong penalty over the last N tokens before max_new_tokens")
    curriculum: tuple[Phase, ...] = param(default_factory=_default_curriculum,
                                          help="phases of the prompt mix, each {steps, weights: {task: weight}} "
                                               "over the tasks of the RL data (--data)")
    format_weight: float = param(0.1, ge=0.0, help="reward += format_weight * the format reward (1 for exactly "
                                                   "<think>...</think><answer>...</answer>, else 0)")
    eval_every: int = param(0, ge=0, help="steps between held-out evaluations of the run; 0 = none (the eval "
                                          "stage scores the final policy)")
    eval_prompts: int = param(32, ge=1, help="held-out items per family (the RL data's heldout.jsonl)")
    eval_samples: int = param(2, ge=1, help="samples per held-out item, averaged (pass@1)")
    eval_temperature: float = param(1.0, gt=0.0, help="the report evaluates at temperature 1.0 ...")
    eval_top_p: float = param(0.95, gt=0.0, le=1.0, help="... and top-p 0.95")
    eval_seed: int = param(1_000_000, help="sampling seed of the held-out evaluations")
    checkpoint_every: int = param(5, ge=1, help="steps per checkpoint (resume point)")
    keep_checkpoints: int = param(2, ge=1, help="newest checkpoints kept")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")
    threads: int = param(2, ge=1, help="CPU cores: torch threads and single-thread generation workers; a fixed number, "
                                       "so results do not depend on the machine's cores (the extend stage uses rl's)")
    train_engine: str = param("torch", choices=("torch", "deepspeed"),
                              help="torch | deepspeed (ZeRO; launch one process per rank)")
    zero_stage: int = param(2, choices=(0, 1, 2), help="DeepSpeed ZeRO stage (3 shards the weights generation needs)")
    rollout_engine: str = param("torch", choices=("torch", "vllm"), help="torch | vllm (GPU only, the gpu extra)")
    vllm: VLLMParams = param(default_factory=VLLMParams, help="the vLLM engine's settings")
    experiment: str = param("m1-rl", help="MLflow experiment")
    run_name: str = param("", help="MLflow run name; empty = <algorithm>-seed<seed>")
    algorithms: Algorithms = param(default_factory=Algorithms, help="each objective's settings, by name")

    def check(self) -> None:
        if self.prompts_per_step % self.updates_per_batch:
            raise self.fail("updates_per_batch", self.updates_per_batch,
                            f"a divisor of prompts_per_step = {self.prompts_per_step} (minibatches hold whole groups)")
        if self.lr == 0 and self.lr_head == 0:
            raise self.fail("lr", self.lr, "a number > 0 where lr_head is 0 (nothing would train)")
        if self.overlong_buffer > self.max_new_tokens:
            raise self.fail("overlong_buffer", self.overlong_buffer, f"an integer <= max_new_tokens ({self.max_new_tokens})")
        if not self.curriculum:
            raise self.fail("curriculum", [], "at least one phase")

    @property
    def algo(self) -> AlgorithmParams:
        """The settings of the chosen objective."""
        return getattr(self.algorithms, self.algorithm)

    def check_world(self, world_size: int) -> None:
        """Data parallelism splits the prompts: each rank takes ``prompts_per_step / world_size``."""
        if self.prompts_per_step % world_size:
            raise ValueError(f"rl.prompts_per_step ({self.prompts_per_step}) must divide by world size {world_size}")
        per_rank = self.prompts_per_step // world_size
        if per_rank % self.updates_per_batch:
            raise ValueError(
                f"rl: {per_rank} prompt groups per rank must divide into updates_per_batch = {self.updates_per_batch}"
            )
