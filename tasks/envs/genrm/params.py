"""``genrm``: the generative reward model's settings, one dataclass per concern (report section 4.2).

``genrm.data`` the labelled judge data, ``genrm.train`` the judge's fine-tuning (through
``tasks.train.sft``), ``genrm.judge`` how it judges, ``genrm.eval`` the stage's measurements,
``genrm.swiss`` the reference tournament, ``genrm.general`` how the general tasks turn verdicts into
rewards, ``genrm.monitor`` the online length-bias monitor of the RL stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tasks.config import Params, param


@dataclass
class JudgeDataParams(Params):
    """``genrm.data``: labelled judge examples. Units: examples = judging prompts with their rationale
    and verdict; every pair appears in both positions (report: position-switched consistent judgment)."""

    SECTION: ClassVar[str] = "genrm.data"
    grade_examples: int = param(2400, ge=1, help="grade-mode training examples (verifiable answers vs reference)")
    pair_examples: int = param(2400, ge=2, help="pairwise training examples (counted per position)")
    length_share: float = param(0.25, ge=0.0, le=1.0, help="share of pairs that differ in length only "
                                                           "(equal quality: verdict 0)")
    adversarial_share: float = param(0.2, ge=0.0, le=1.0, help="share of pairs where the longer reply is the "
                                                               "worse one (report 4.2.2: adversarial examples)")
    max_pad: int = param(4, ge=1, help="most filler or repeated sentences added when padding a reply")
    arithmetic_difficulty: tuple[int, ...] = param((1, 2, 3), ge=1, help="arithmetic difficulties of graded answers")
    math_share: float = param(0.2, ge=0.0, le=1.0, help="share of graded answers from the math task (LaTeX "
                                                        "fractions: 3/4, 0.75)")
    eval_grade: int = param(300, ge=1, help="held-out grade-mode examples")
    eval_pairs: int = param(300, ge=1, help="held-out pairs, each judged in both positions")
    eval_length_pairs: int = param(200, ge=1, help="held-out equal-quality pairs of different length (longer-wins)")

    def check(self) -> None:
        if self.length_share + self.adversarial_share > 1.0:
            raise self.fail("adversarial_share", self.adversarial_share,
                            f"a number <= 1 - length_share ({1.0 - self.length_share:g})")


@dataclass
class JudgeTrainParams(Params):
    """``genrm.train``: fine-tuning the judge with ``tasks.train.sft`` (the rest of its settings are
    the ``sft`` defaults: AdamW (0.9, 0.95, 1e-15), clip 1.0, cosine decay)."""

    SECTION: ClassVar[str] = "genrm.train"
    model: dict[str, Any] = param(
        default_factory=lambda: {"arch": "m1", "preset": "tiny", "num_hidden_layers": 4,
                                 "layer_types": ["linear_attention"] * 3 + ["full_attention"]},
        help="judge spec: {arch: m1, preset: NAME, <M1Config fields>} or {arch: llama | qwen2, <config fields>}; tiny "
             "default: the tiny preset at 4 layers (3 lightning, 1 softmax), trained in half the 8 layers' time and "
             "judging pairs better (position-swap agreement 0.69 against 0.24; grades 0.46 against 0.53: LOG.md)")
    init: str = param("", help="a policy directory to fine-tune instead of a fresh model (any HF causal LM)")
    vocab_size: int = param(1024, ge=263, help="a fresh judge's BPE vocabulary, trained on the judge data")
    steps: int = param(250, ge=1, help="optimizer steps (the 4-layer tiny judge: 0.4-0.6 s each on 2 CPU cores)")
    batch_size: int = param(32, ge=1, help="judging examples per optimizer step")
    lr: float = param(2e-3, gt=0.0, help="peak learning rate")
    warmup_steps: int = param(20, ge=0, help="linear warmup steps")
    checkpoint_every: int = param(50, ge=1, help="steps per checkpoint (resume point)")
    recalibrate_steps: int = param(40, ge=1, help="steps of a recalibration on length-balanced pairs")
    recalibrate_examples: int = param(600, ge=2, help="examples of a recalibration set")
    recalibrate_lr: float = param(5e-4, gt=0.0, help="peak learning rate of a recalibration")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")

    def check(self) -> None:
        if "arch" not in self.model:
            raise self.fail("model", self.model, "a mapping with arch: m1 | llama | qwen2")
        if self.warmup_steps >= self.steps:
            raise self.fail("warmup_steps", self.warmup_steps, f"an integer < steps ({self.steps})")


@dataclass
class JudgeParams(Params):
    """``genrm.judge``: judging. Greedy decoding of a short verdict reply, batched."""

    SECTION: ClassVar[str] = "genrm.judge"
    batch_size: int = param(128, ge=1, help="judging prompts per generate call and worker")
    max_new_tokens: int = param(40, ge=1, help="reply budget: a rationale of up to about 30 tokens, then the verdict")
    max_prompt_tokens: int = param(512, ge=16, help="longer judging prompts are cut at the front")
    device: str = param("auto", help="auto = the GPU when there is one, else cpu")


@dataclass
class JudgeEvalParams(Params):
    """``genrm.eval``: best-of-N on a verifiable task with the policy's own samples."""

    SECTION: ClassVar[str] = "genrm.eval"
    task: str = param("arithmetic", help="verifiable task of the best-of-N comparison")
    difficulty: int = param(2, ge=1, help="its difficulty")
    items: int = param(64, ge=1, help="held-out items")
    n: int = param(8, ge=2, help="samples per item (N of best-of-N and pass@N)")
    item_seed: int = param(1_000_000, help="arithmetic: seeds >= 1e6 draw its held-out pairs")
    temperature: float = param(1.0, gt=0.0, help="the report's evaluation sampling ...")
    top_p: float = param(0.95, gt=0.0, le=1.0, help="... temperature 1.0, top-p 0.95")
    max_new_tokens: int = param(48, ge=1, help="policy reply budget")
    batch_size: int = param(128, ge=1, help="policy sequences per generate call and worker")


@dataclass
class SwissParams(Params):
    """``genrm.swiss``: the Swiss-round tournament that picks each open prompt's reference answer."""

    SECTION: ClassVar[str] = "genrm.swiss"
    prompts: int = param(48, ge=1, help="general prompts given a reference by the stage (per task)")
    candidates: int = param(8, ge=2, help="candidate answers per prompt")
    rounds: int = param(0, ge=0, help="rounds; 0 = ceil(log2(candidates)) + 1")


@dataclass
class GeneralParams(Params):
    """``genrm.general``: the rewards of the general tasks."""

    SECTION: ClassVar[str] = "genrm.general"
    rule_weight: float = param(0.5, ge=0.0, le=1.0, help="instruct: reward = rule_weight * constraints met + "
                                                         "(1 - rule_weight) * judge score")
    max_constraints: int = param(2, ge=1, le=4, help="instruct: constraints per prompt")


@dataclass
class MonitorParams(Params):
    """``genrm.monitor``: the online length-bias monitor (report 4.2.2). Over the last ``window``
    steps of judged replies: ``corr`` = Pearson correlation of judge score with reply length within
    groups of equal rule-checked success (pooled); ``growth`` = mean length of the window's newer
    half over its older half; ``gain`` = rule success, newer half minus older half. It fires when
    corr > corr_threshold, growth > min_growth and gain < max_gain: length buys judge reward
    without buying task success."""

    SECTION: ClassVar[str] = "genrm.monitor"
    enabled: bool = param(True, help="watch the judged rewards for length bias")
    window: int = param(6, ge=2, help="steps of judged replies the statistic covers")
    min_samples: int = param(32, ge=4, help="judged replies needed before the monitor can fire")
    corr_threshold: float = param(0.3, ge=-1.0, le=1.0, help="fire above this length-reward correlation")
    min_growth: float = param(1.1, ge=1.0, help="... and when mean length grew by this ratio over the window")
    max_gain: float = param(0.05, help="... and rule success rose by less than this")
    cooldown: int = param(6, ge=0, help="steps after a firing during which it cannot fire again")
    recalibrate: bool = param(True, help="fine-tune the judge on length-balanced pairs when it fires")
    length_debias: float = param(0.5, ge=0.0, le=1.0, help="reward shaping: remove this share of the judge "
                                                           "score's linear dependence on length within a group")
    clip: tuple[float, float] = param((0.0, 1.0), help="judge scores are clipped to [low, high] after shaping")

    def check(self) -> None:
        if not self.clip[0] < self.clip[1]:
            raise self.fail("clip", list(self.clip), "[low, high] with low < high")


@dataclass
class GenRMParams(Params):
    """``genrm``: generative reward model: judge data, fine-tuning, judging, evaluation, general
    tasks and the RL length-bias monitor (report section 4.2)."""

    SECTION: ClassVar[str] = "genrm"
    seed: int = param(0, help="data, training and sampling seed")
    data: JudgeDataParams = param(default_factory=JudgeDataParams, help="labelled judge examples")
    train: JudgeTrainParams = param(default_factory=JudgeTrainParams, help="the judge's fine-tuning")
    judge: JudgeParams = param(default_factory=JudgeParams, help="judging")
    eval: JudgeEvalParams = param(default_factory=JudgeEvalParams, help="best-of-N evaluation")
    swiss: SwissParams = param(default_factory=SwissParams, help="reference tournament")
    general: GeneralParams = param(default_factory=GeneralParams, help="general-task rewards")
    monitor: MonitorParams = param(default_factory=MonitorParams, help="online length-bias monitor (RL)")
    threads: int = param(2, ge=1, help="CPU cores: torch threads and single-thread generation workers; a fixed number, "
                                       "so results do not depend on the machine's cores")
    experiment: str = param("m1-genrm", help="MLflow experiment")
