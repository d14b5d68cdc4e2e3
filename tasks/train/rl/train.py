"""The RL driver: CISPO (or GRPO / DAPO) on verifiable tasks, one readable loop.

    python -m tasks.train.rl.train --policy runs/sft/policy --data data/rl --output runs/rl [--params params.yaml]
        [--set algorithm=grpo] [--set steps=40] [--set train_engine=deepspeed] ...

Prompts come only from the RL data (``--data``: the ``rl_data`` stage's mix.parquet), drawn by the
curriculum's phase weights (``rl.curriculum``, ``tasks.train.rl.data``); held-out evaluations, when
``rl.eval_every`` asks for them, use its heldout.jsonl. The reward is the task's verifier score plus
``rl.format_weight`` times the format reward, plus DAPO's overlong penalty.

With ``--genrm DIR`` (the ``genrm`` stage's output) the general tasks' items (``DIR/general.jsonl``)
join the RL data, so a curriculum phase that weights ``open_prompt`` / ``instruct`` draws them, and
their replies are scored by the generative judge (``tasks.envs.genrm.online.OnlineJudge``): one
batched judging call per task per rollout, judge throughput logged, the length-bias monitor read
every step; when it fires, an event is logged and the judge is recalibrated before the next step.

Rerunning with the same ``--output`` resumes from the last checkpoint. Each step: draw prompts,
generate ``samples_per_prompt`` responses each with the rollout engine (keeping its log-probs), score
them with the tasks' verifiers (plus DAPO's overlong penalty), keep informative groups (dynamic
sampling), compute group-relative advantages, cut the groups into ``updates_per_batch`` minibatches of
whole groups, recompute the old log-probs through the training path minibatch by minibatch, then one
off-policy update per minibatch; log to MLflow; checkpoint. The training path runs each distinct
prompt of a minibatch once and its G replies on its cache (``model.logprobs.response_logprobs``).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from model.sharded import set_cores
from tasks.config import exits_cleanly, load, stage_parser
from tasks.envs.base import format_reward
from tasks.envs.genrm.online import OnlineJudge
from tasks.envs.genrm.params import GenRMParams
from tasks.envs.params import EnvParams
from tasks.envs.scoring import Scorer
from tasks.train.checkpoint import latest_checkpoint, load_state, made_by, resume_from, rng_state, save_checkpoint, set_rng_state
from tasks.train.rl.advantages import group_advantages
from tasks.train.rl.config import RLParams
from tasks.train.rl.data import RLData, draw_prompts, phase_at, phase_weights
from tasks.train.rl.engines import make_rollout_engine, make_trainer
from tasks.train.rl.losses import policy_loss
from tasks.train.policy import encode_prompt, load_policy, resolve_device, save_policy
from tasks.train.rl.sampling import GroupBatch, group_minibatches, overlong_penalty
from tasks.train.tracking import RunTracker


def seeded_generator(seed: int, device: torch.device) -> torch.Generator:
    """A generator on the device sampling happens on (CUDA sampling needs a CUDA generator)."""
    return torch.Generator(device=device).manual_seed(seed)


def reply_text(tok, tokens: list[int]) -> str:
    """A sampled reply as text, special tokens kept (the answer tags) but the closing eos dropped."""
    if tokens and tokens[-1] == tok.eos_token_id:
        tokens = tokens[:-1]
    return tok.decode(tokens, skip_special_tokens=False)


def rollout(engine, tok, scorer: Scorer, drawn, samples: int, params, generator, cfg: RLParams,
            judge: OnlineJudge | None = None) -> list[dict]:
    """Generate ``samples`` responses per prompt and score them; one dict per prompt (a group).
    Groups of judge-scored tasks are scored by ``judge`` in one batched call (their replies enter its
    length-bias monitor)."""
    prompts = [encode_prompt(tok, item["question"]) for _, item in drawn]
    out = engine.generate([p for p in prompts for _ in range(samples)], params, generator=generator)
    per_group = [[out.tokens[k] for k in range(j * samples, (j + 1) * samples)] for j in range(len(drawn))]
    replies = [[reply_text(tok, r) for r in rs] for rs in per_group]
    judged = {} if judge is None else judge.score(drawn, replies, [[len(r) for r in rs] for rs in per_group], observe=True)
    ruled = [j for j in range(len(drawn)) if j not in judged]  # groups scored by their task's verifier
    flat = scorer.score_many([(drawn[j][1], t) for j in ruled for t in replies[j]])
    scored = {**judged, **{j: flat[n * samples : (n + 1) * samples] for n, j in enumerate(ruled)}}
    groups = []
    for j, ((name, item), prompt) in enumerate(zip(drawn, prompts)):
        seqs = range(j * samples, (j + 1) * samples)
        responses, texts = per_group[j], replies[j]
        scores = scored[j]
        lengths = torch.tensor([len(r) for r in responses])
        penalty = overlong_penalty(lengths, cfg.max_new_tokens, cfg.overlong_buffer, cfg.algo.overlong_penalty)
        formats = [format_reward(t) for t in texts]
        shaped = [s + cfg.format_weight * f + float(p) for s, f, p in zip(scores, formats, penalty)]
        groups.append(
            {
                "task": name,
                "prompt": prompt,
                "responses": responses,
                "logprobs": [out.logprobs[k] for k in seqs],
                "finish": [out.finish_reasons[k] for k in seqs],
                "scores": scores,
                "formats": formats,
                "rewards": shaped,
            }
        )
    return groups


def pack(groups: list[dict]) -> dict:
    """Each sequence's prompt and reply (token lists) and ``[N, R]`` grids over the reply tokens
    (R the longest reply, right-padded): mask (1 on reply tokens), the engine's log-probs."""
    prompts = [g["prompt"] for g in groups for _ in g["responses"]]
    responses = [r for g in groups for r in g["responses"]]
    logprobs = [lp for g in groups for lp in g["logprobs"]]
    width = max(len(r) for r in responses)
    mask = torch.zeros(len(responses), width)
    infer = torch.zeros(len(responses), width)
    for i, (r, lp) in enumerate(zip(responses, logprobs)):
        mask[i, : len(r)] = 1
        infer[i, : len(r)] = torch.tensor(lp, dtype=torch.float32)
    return {"prompts": prompts, "responses": responses, "mask": mask, "infer_logprobs": infer}


def probability_health(infer_logprobs: torch.Tensor, train_logprobs: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The report's key health metric (Figure 3): Pearson correlation and mean |delta p| between the
    engine's and the training path's probabilities of the same sampled tokens."""
    sel = mask.bool()
    p_inf, p_train = infer_logprobs[sel].exp().double(), train_logprobs[sel].exp().double()
    delta = float((p_inf - p_train).abs().mean()) if sel.any() else float("nan")
    if sel.sum() < 2 or p_inf.std() == 0 or p_train.std() == 0:
        return {"health/prob_pearson": float("nan"), "health/prob_abs_delta": delta}
    corr = float(torch.corrcoef(torch.stack([p_inf, p_train]))[0, 1])
    return {"health/prob_pearson": corr, "health/prob_abs_delta": delta}


def rollout_metrics(groups: list[dict]) -> dict[str, float]:
    """Reward, accuracy and mean reply length per task, reply length mean / p50 / p99, finish-reason
    fractions, and the perplexity of the generated tokens."""
    m: dict[str, float] = {}
    for name in sorted({g["task"] for g in groups}):
        mine = [g for g in groups if g["task"] == name]
        m[f"reward/{name}"] = float(np.mean([r for g in mine for r in g["rewards"]]))
        m[f"accuracy/{name}"] = float(np.mean([s >= 1.0 for g in mine for s in g["scores"]]))
    m["reward/mean"] = float(np.mean([r for g in groups for r in g["rewards"]]))
    m["reward/format"] = float(np.mean([f for g in groups for f in g["formats"]]))
    m["accuracy/mean"] = float(np.mean([s >= 1.0 for g in groups for s in g["scores"]]))
    lengths = np.array([len(r) for g in groups for r in g["responses"]])
    m["length/mean"], m["length/p50"], m["length/p99"] = float(lengths.mean()), float(np.percentile(lengths, 50)), float(np.percentile(lengths, 99))
    for name in sorted({g["task"] for g in groups}):
        m[f"length/{name}"] = float(np.mean([len(r) for g in groups if g["task"] == name for r in g["responses"]]))
    # perplexity of the generated tokens under the sampling distribution (length extension's indicator)
    logprobs = [lp for g in groups for seq in g["logprobs"] for lp in seq]
    m["rollout/perplexity"] = float(np.exp(-np.mean(logprobs))) if logprobs else float("nan")
    reasons = [f for g in groups for f in g["finish"]]
    for reason in ("eos", "length", "repetition"):
        m[f"finish/{reason}"] = reasons.count(reason) / len(reasons)
    return m


def minibatch_logprobs(module, data: dict, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies ``[n, width]`` of the reply tokens of sequences ``idx``, cropped to
    their longest reply; each distinct prompt runs once (``model.logprobs.response_logprobs``)."""
    from model.logprobs import response_logprobs

    rows = idx.tolist()
    return response_logprobs(module, [data["prompts"][i] for i in rows], [data["responses"][i] for i in rows])


def old_policy_logprobs(module, data: dict, minibatches: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """pi_old's log-probs and entropies ``[N, R]`` over the reply tokens, computed minibatch by minibatch exactly as the
    updates will compute pi_theta (same rows, same width, the module's current mode), so the first
    update's IS ratios are exactly 1."""
    logprobs, entropy = torch.zeros_like(data["mask"]), torch.zeros_like(data["mask"])
    with torch.no_grad():
        for idx in minibatches:
            lp, ent = minibatch_logprobs(module, data, idx)
            logprobs[idx, : lp.shape[1]], entropy[idx, : lp.shape[1]] = lp, ent
    return logprobs, entropy


def update_policy(trainer, cfg: RLParams, data: dict, advantages: torch.Tensor,
                  old_logprobs: torch.Tensor, minibatches: list[torch.Tensor]) -> dict[str, list[float]]:
    """One optimizer update per minibatch; the loss terms and metrics of each, in order. A minibatch
    whose advantages are all zero on every rank is skipped: its loss has no gradient, but AdamW would
    still move the weights along its momentum."""
    upd = {"loss": [], "grad_norm": [], "is_weight_mean": [], "clip_fraction": [], "masked_fraction": [], "skipped": []}
    for idx in minibatches:
        skip = trainer.all_true(bool((advantages[idx] == 0).all()))
        upd["skipped"].append(float(skip))
        if skip:
            continue
        logprobs, _ = minibatch_logprobs(trainer.module, data, idx)
        width = logprobs.shape[1]
        loss, lm = policy_loss(
            logprobs, old_logprobs[idx, :width], advantages[idx], data["mask"][idx, :width],
            algorithm=cfg.algorithm, eps_low=cfg.algo.eps_low, eps_high=cfg.algo.eps_high,
            trust_region_mask=cfg.algo.trust_region_mask, normalization=cfg.algo.normalization,
        )
        upd["grad_norm"].append(trainer.step(loss))
        upd["loss"].append(loss.item())
        for k, v in lm.items():
            upd[k].append(v)
    return upd


def evaluate(engine, tok, scorer: Scorer, eval_sets: dict, cfg: RLParams, device: torch.device) -> dict[str, float]:
    """Held-out accuracy per family: ``eval_samples`` samples per item at the eval temperature / top-p
    (the report evaluates at temperature 1.0, top-p 0.95), averaged (pass@1)."""
    from model.generation import SamplingParams

    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.eval_temperature,
        top_p=cfg.eval_top_p,
        stop_token_ids=(tok.eos_token_id,),
        repetition_n=cfg.repetition_n,
        repetition_p=cfg.repetition_p,
    )
    m = {}
    for name, items in eval_sets.items():
        gen = seeded_generator(cfg.eval_seed, device)
        groups = rollout(engine, tok, scorer, [(name, it) for it in items], cfg.eval_samples, params, gen, cfg)
        m[f"eval/accuracy/{name}"] = float(np.mean([s >= 1.0 for g in groups for s in g["scores"]]))
    m["eval/accuracy"] = float(np.mean(list(m.values())))
    return m


def train_rl(cfg: RLParams, policy_dir: str | Path, data_dir: str | Path, out_dir: str | Path,
             envs: EnvParams, *, init: str | Path | None = None,
             stop: Callable[[int, dict[str, float]], str | None] | None = None,
             genrm: GenRMParams | None = None, genrm_dir: str | Path | None = None) -> dict[str, float]:
    """Run (or resume) RL from ``policy_dir`` on the RL data of ``data_dir`` into ``out_dir``;
    returns the last step's metrics.

    Writes ``checkpoints/step_*/`` (all state), ``metrics.jsonl`` and, at the end, ``policy/`` (HF format).

    ``init``: a checkpoint of another run (``checkpoints/step_*``) to continue from when ``out_dir``
    has none of its own: its weights, optimizer and warmup state, step and prompt cursor (length
    extension continues the RL run this way). ``stop(step, metrics)``: called on the main rank after
    each step's rollout metrics (it may add entries to them before they are logged); a reason ends the
    run after evaluating (``eval_every`` > 0) and checkpointing that step, and the reason is kept in
    the checkpoint, so a resumed run stops there too.
    ``genrm_dir``: the ``genrm`` stage's output; its general items join the RL data and its judge
    (settings ``genrm``) scores them, with recalibrations under ``out_dir/genrm/``.
    """
    from model.generation import SamplingParams

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    model, tok = load_policy(policy_dir)
    device = resolve_device(cfg.device)
    model.to(device)
    rl_data = RLData.load(data_dir)
    out = Path(out_dir)
    judge = None
    if genrm_dir is not None:
        judge = OnlineJudge(genrm or GenRMParams(), genrm_dir, out)
        rl_data.rows.update(judge.rows())
    weights = phase_weights(cfg, rl_data)
    for p, phase in enumerate(cfg.curriculum):
        left_out = sorted(set(phase.weights) - set(weights[p]))
        if left_out:
            print(f"rl.curriculum[{p}]: no rows in {data_dir} for {', '.join(left_out)}; drawing from {sorted(weights[p])}")
    scorer = Scorer(envs, workers=cfg.threads)
    G = cfg.samples_per_prompt

    trainer = make_trainer(model, cfg, micro_batch=cfg.prompts_per_step * G // cfg.updates_per_batch)
    cfg.check_world(trainer.world_size)
    per_rank = cfg.prompts_per_step // trainer.world_size
    state = {"step": 0, "cursor": 0, "run_id": None}
    # checkpoints count only if these params and this base policy made them; otherwise start afresh, saying why
    made = made_by({"rl": cfg, "envs": envs, **({"genrm": genrm or GenRMParams()} if judge else {})},
                   {"policy": policy_dir, "data": data_dir, **({"init": init} if init else {}),
                    **({"genrm": genrm_dir} if judge else {})})
    last = resume_from(out / "checkpoints", made) if trainer.is_main else None
    trainer.barrier()
    if not trainer.is_main:
        last = latest_checkpoint(out / "checkpoints")
    if last is not None:
        trainer.load(last)
        state = load_state(last)
        set_rng_state(state["rng"])
        if judge is not None:
            judge.load_state_dict(state["genrm"])
    elif init is not None:
        trainer.load(Path(init))
        begun = load_state(init)
        state.update(step=begun["step"], cursor=begun["cursor"])
    module = trainer.module
    run_name = cfg.run_name or f"{cfg.algorithm}-seed{cfg.seed}"
    tracker = RunTracker(
        out, experiment=cfg.experiment, run_name=run_name, params=cfg.to_dict(),
        made=made, run_id=state["run_id"], resume_step=state["step"], enabled=trainer.is_main,
    )
    engine = make_rollout_engine(cfg, module, tok, out)
    params = SamplingParams(
        max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        stop_token_ids=(tok.eos_token_id,),
        repetition_n=cfg.repetition_n,
        repetition_p=cfg.repetition_p,
    )
    eval_sets = {family: items[: cfg.eval_prompts] for family, items in sorted(rl_data.heldout.items())}
    if state["step"] == 0 and cfg.eval_every > 0:
        module.eval()
        with torch.no_grad():
            tracker.log(0, evaluate(engine, tok, scorer, eval_sets, cfg, device))

    metrics: dict[str, float] = {}
    end = state["step"] if state.get("stopped") else cfg.steps
    for step in tqdm(range(state["step"], end), initial=state["step"], total=cfg.steps, disable=not trainer.is_main, desc=run_name):
        # 1. rollouts, with dynamic sampling: draw rounds of prompts until enough informative groups
        module.eval()
        t0 = time.perf_counter()
        batch = GroupBatch(per_rank, cfg.algo.dynamic_sampling)
        sampled: list[dict] = []
        rounds = 0
        with torch.no_grad():
            for rounds in range(1, (cfg.max_sampling_rounds if cfg.algo.dynamic_sampling else 1) + 1):
                drawn = draw_prompts(cfg, weights, rl_data, state["cursor"], cfg.prompts_per_step, step)[trainer.rank :: trainer.world_size]
                state["cursor"] += cfg.prompts_per_step
                gen = seeded_generator(((cfg.seed * 100_003 + step) * 101 + rounds) * 1009 + trainer.rank, device)
                groups = rollout(engine, tok, scorer, drawn, G, params, gen, cfg, judge)
                sampled += groups
                batch.add(groups, torch.tensor([g["rewards"] for g in groups]))
                if trainer.all_true(batch.full):
                    break
        groups, filled = batch.finish()
        gen_seconds = time.perf_counter() - t0
        gen_tokens = sum(len(r) for g in sampled for r in g["responses"])

        # 2. advantages, minibatches of whole groups, and the old policy's log-probs through the
        # training path in the mode of the update
        data = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in pack(groups).items()}
        advantages = group_advantages(torch.tensor([g["rewards"] for g in groups])).reshape(-1).to(device)  # [N]
        minibatches = group_minibatches(len(groups), G, cfg.updates_per_batch,
                                        torch.Generator().manual_seed(cfg.seed * 7919 + step))
        module.train()
        old_logprobs, entropy = old_policy_logprobs(module, data, minibatches)  # [N, T]
        mask = data["mask"]

        # 3. off-policy minibatch updates
        t1 = time.perf_counter()
        rates = trainer.rates()
        upd = update_policy(trainer, cfg, data, advantages, old_logprobs, minibatches)
        train_seconds = time.perf_counter() - t1
        sync = getattr(engine, "sync_weights", None)
        if sync is not None:
            sync(module)

        # 4. log and checkpoint
        metrics = rollout_metrics(sampled)
        metrics.update({f"train/{k}": float(np.mean(v)) for k, v in upd.items() if v})
        metrics.update({f"train/lr_{name}": rate for name, rate in rates.items()})
        metrics.update(probability_health(data["infer_logprobs"], old_logprobs, mask))
        metrics["train/entropy"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
        metrics["rollout/rounds"] = rounds
        metrics["curriculum/phase"] = phase_at(cfg, step)
        metrics["rollout/dropped_groups"] = batch.dropped
        metrics["rollout/filled_groups"] = filled
        metrics["perf/gen_tokens_per_s"] = gen_tokens / max(gen_seconds, 1e-9)
        metrics["perf/train_tokens_per_s"] = sum(map(len, data["prompts"] + data["responses"])) / max(train_seconds, 1e-9)
        metrics["reward/mean_all_ranks"] = trainer.mean(metrics["reward/mean"])
        if judge is not None:  # the monitor's reading; when it fires: an event, then a recalibrated judge
            judged, event = judge.end_step(step)
            metrics.update(judged)
            if event is not None:
                print(f"step {step + 1}: length bias (corr {event['length_corr']:.2f}, length x{event['length_growth']:.2f}, "
                      f"success {event['success_gain']:+.2f}); judge recalibrated: {event.get('judge', 'off')}")
        if stop is not None:
            reason = stop(step + 1, metrics) if trainer.is_main else None
            if trainer.mean(float(reason is not None)) > 0:
                state["stopped"] = reason or "stopped on the main rank"
        if cfg.eval_every > 0 and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps or state.get("stopped")):
            module.eval()
            with torch.no_grad():
                metrics.update(evaluate(engine, tok, scorer, eval_sets, cfg, device))
        tracker.log(step + 1, metrics)
        state["step"] = step + 1
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps or state.get("stopped"):
            state.update(rng=rng_state(), run_id=tracker.run_id, **({"genrm": judge.state_dict()} if judge else {}))
            save_checkpoint(
                out / "checkpoints", step + 1, dict(state), trainer.save, made=made,
                keep=cfg.keep_checkpoints, is_main=trainer.is_main, barrier=trainer.barrier,
            )
        if state.get("stopped"):
            break

    close = getattr(engine, "close", None)  # generation worker processes (model.sharded)
    if close is not None:
        close()
    if trainer.is_main:
        save_policy(module, tok, out / "policy")
    tracker.close()
    return metrics


PARAMS = {"rl": RLParams, "envs": EnvParams, "genrm": GenRMParams}


@exits_cleanly
def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, {"policy": "policy directory to start from (tasks.train.sft's output)",
                                "data": "the RL data folder (tasks.curate.rl_data's output: mix.parquet, heldout.jsonl)"},
                      prog="python -m tasks.train.rl.train")
    ap.add_argument("--genrm", help="the genrm stage's output (judge + general items); without it no judged task is drawn")
    args = ap.parse_args(argv)
    loaded = load(args.params, PARAMS, args.set)
    set_cores(loaded["rl"].threads)
    final = train_rl(loaded["rl"], args.policy, args.data, args.output, loaded["envs"],
                     genrm=loaded["genrm"], genrm_dir=args.genrm)
    print({k: round(v, 4) for k, v in final.items() if k.startswith(("eval/", "accuracy/", "reward/mean"))})


if __name__ == "__main__":
    main()
