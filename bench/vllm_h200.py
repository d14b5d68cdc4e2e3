"""python3 bench/vllm_h200.py --output OUT   (on the H200 with vLLM 0.23 on PYTHONPATH; bench/vllm_h200.sh)

Issue 15 on one GPU: our model against vLLM 0.23, every part in its own process under one deadline
(a part that hangs or crashes costs its own results only), merged into ``OUT/vllm_h200.json``:

- ``random``: the issue's random 8-layer export (d=1024, 8 heads x 128, 4 experts, V=32768, head
  weights x12 so distributions are peaked) through ``VLLMEngine``: the names vLLM loads, Figure 3
  (vLLM with a bf16 and an fp32 head against the trainer's bf16 head, fp32 head and fp32 model),
  per-layer and per-component activations of a 1024-token prefill against an fp32 reference on the
  same weights, the switches of ``M1VLLMForCausalLM`` (aligned decay / eps, our prefill kernel),
  weight sync, early truncation, and rollout tokens/s of vLLM and of TorchEngine (eager, CUDA graph).
- ``kernel``: the fused log-prob kernel at fp32 and bf16 (forward and backward) against fp64, with
  the tiles and the shared memory it asks for.
- ``rl``: ``python -m tasks.train.rl.train --set rollout_engine=vllm`` from the tiny SFT policy on
  data/rl, MLflow into a sqlite store (``vllm_rl_mlflow.db``).
- ``speed``: where vLLM's decode step goes: tokens/s with and without log-probs and per-request
  seeds, 64 and 256 prompts, a 1-token run for the fixed cost, and a profile of one rollout
  (``vllm_profile.txt``); ``speed_vp``: the same with vLLM's lightning prefill; ``speed_mp``: vLLM's
  own class with its engine core in its own process.
- ``v200k``: Figure 3 at M1's vocabulary, V=200064.
- ``router32``: Figure 3 on the random export with vLLM choosing experts on fp32 router logits.
- ``trained``: Figure 3 on the SFT policy (runs/sft/policy) answering arithmetic prompts.

``random``'s steps can be chosen (``--random-steps``). Also writes ``vllm_agreement.png``,
``vllm_layers.png``, ``vllm_loaded_names.txt`` and ``vllm_rl_metrics.jsonl``; prints a summary table
last.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.vllm_h200_layers import layer_diff, prompt_logprob_error, rel  # noqa: E402
from bench.vllm_h200_report import compare, plots, summary  # noqa: E402
WORK = Path("/tmp/vbench")
DEV = "cuda"
PARTS = {"kernel": 90, "random": 230, "rl": 240, "v200k": 120, "trained": 110, "trunc": 80, "router32": 110,
         "speed": 200, "speed_vp": 150, "speed_mp": 200}  # seconds each may take
RANDOM_STEPS = ("names", "figure3", "layers", "switches", "sync", "truncation", "throughput")
RANDOM = dict(hidden_size=1024, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
              num_key_value_heads=4, head_dim=128, num_local_experts=4)


def log(*a) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, *a, **kw):
    sync()
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    sync()
    return out, time.perf_counter() - t0


def random_policy(vocab: int, seed: int = 0):
    """The issue's random export: fp32 master weights on the GPU, LM head x12."""
    from model import M1Config, M1ForCausalLM

    torch.manual_seed(seed)
    with torch.device(DEV):
        model = M1ForCausalLM(M1Config(vocab_size=vocab, **RANDOM))
    with torch.no_grad():
        model.lm_head.weight.mul_(12)
    return model.eval()


def engine_for(model, name: str, res: dict, router: str = "bf16", prefill: str = "m1"):
    """``VLLMEngine`` with rl.vllm's defaults (CUDA graphs); if that cannot start, eager, noted in ``res``."""
    from tasks.train.rl.config import VLLMParams
    from tasks.train.rl.engines import VLLMEngine

    graphs = os.environ.get("M1_BENCH_GRAPHS", "1") == "1"
    try:
        eng, seconds = timed(VLLMEngine, model, WORK / f"export_{name}", VLLMParams(cuda_graphs=graphs, prefill=prefill), seed=0,
                             router=router)
    except Exception as e:
        if not graphs:
            raise
        res["cuda_graphs_error"] = f"{type(e).__name__}: {e}"[:1000]
        log("CUDA-graph engine failed, eager instead:", res["cuda_graphs_error"])
        graphs = False
        eng, seconds = timed(VLLMEngine, model, WORK / f"export_{name}", VLLMParams(cuda_graphs=False, prefill=prefill), seed=0,
                             router=router)
    res["cuda_graphs"], res["load_s"] = graphs, seconds
    vm = eng.llm.apply_model(lambda m: m)[0]
    log(f"vLLM engine up in {seconds:.1f}s (graphs {graphs}): {type(vm).__name__}, lm_head {vm.lm_head.weight.dtype}")
    return eng, vm


class Trainers:
    """The trainer's probabilities of given sequences: bf16 body with a bf16 head, bf16 body with the
    fp32 master head (the report's fix), and the fp32 master model (what rl.train computes)."""

    def __init__(self, master) -> None:
        self.master = master
        self.bf16 = copy.deepcopy(master).to(torch.bfloat16).eval()
        self.head32 = master.lm_head.weight.detach().float()  # [V, d]
        self.fp32_error = None  # the fp32 model's kernels may not build at every shape; the rest still counts

    def _fp32_model(self, ids, mask):
        from model.logprobs import token_logprobs

        if self.fp32_error is None:
            try:
                return token_logprobs(self.master, ids, mask)[0][:, 1:]
            except Exception as e:
                self.fp32_error = f"{type(e).__name__}: {e}"[:500]
                log("fp32 model rescoring failed:", self.fp32_error)
        return None

    @torch.no_grad()
    def probs(self, seqs: list[list[int]], starts: list[int], batch: int = 16) -> dict[str, list[float]]:
        out = {"bf16_head": [], "fp32_head": [], "fp32_model": []}
        for b0 in range(0, len(seqs), batch):
            chunk, first = seqs[b0:b0 + batch], starts[b0:b0 + batch]
            width = max(map(len, chunk))
            ids = torch.zeros(len(chunk), width, dtype=torch.long, device=DEV)
            mask = torch.zeros_like(ids)
            for i, s in enumerate(chunk):
                ids[i, :len(s)], mask[i, :len(s)] = torch.tensor(s), 1
            hidden = self.bf16.model(ids, mask)[0][:, :-1]  # [b, T-1, d] bf16, training path
            tgt = ids[:, 1:, None]
            lp16 = torch.log_softmax(self.bf16.lm_head(hidden).float(), -1).gather(-1, tgt)[..., 0]
            lp32 = torch.log_softmax(torch.nn.functional.linear(hidden.float(), self.head32), -1).gather(-1, tgt)[..., 0]
            lpm = self._fp32_model(ids, mask)
            for i, s in enumerate(chunk):
                sl = slice(first[i] - 1, len(s) - 1)
                out["bf16_head"] += lp16[i, sl].exp().tolist()
                out["fp32_head"] += lp32[i, sl].exp().tolist()
                if lpm is not None:
                    out["fp32_model"] += lpm[i, sl].exp().tolist()
        return {k: v for k, v in out.items() if v}


def figure3(eng, vm, trainers: Trainers, prompts, params, name: str) -> dict:
    """vLLM samples with each head; the trainers rescore the same tokens."""
    result = {}
    for head in ("bf16", "fp32"):
        vm.set_head(head)
        gen = torch.Generator(device=DEV).manual_seed(1)
        out, sec = timed(eng.generate, prompts, params, gen)
        p_vllm = [math.exp(x) for lps in out.logprobs for x in lps]
        train = trainers.probs([p + t for p, t in zip(prompts, out.tokens)], [len(p) for p in prompts])
        result[head] = {"generate_s": sec, **{f"vs_trainer_{k}": compare(p_vllm, v) for k, v in train.items()}}
        if trainers.fp32_error:
            result[head]["fp32_model_error"] = trainers.fp32_error
        torch.save({"p_vllm": p_vllm, **train}, WORK / f"fig3_{name}_{head}.pt")
        log(name, head, {k: round(v["pearson"], 6) for k, v in result[head].items() if k.startswith("vs_")})
    vm.set_head("fp32")
    return result


def throughput_vllm(eng, prompts, new: int) -> dict:
    from model.generation import SamplingParams

    params = SamplingParams(max_new_tokens=new, temperature=1.0, repetition_n=10**9)
    out = {}
    for label, seeded in (("unseeded", False), ("seeded", True)):
        eng.generate(prompts, params, torch.Generator(device=DEV).manual_seed(0) if seeded else None)  # warm-up
        runs = []
        for r in range(3):
            gen = torch.Generator(device=DEV).manual_seed(r) if seeded else None
            res, sec = timed(eng.generate, prompts, params, gen)
            runs.append(sum(map(len, res.tokens)) / sec)
        out[label] = {"tokens_per_s": sorted(runs)[1], "runs": runs}
        log("vLLM", label, f"{sorted(runs)[1]:.0f} tok/s", [round(x) for x in runs])
    return out


def throughput_torch(master, prompts, new: int) -> dict:
    from model.generation import SamplingParams, TorchEngine

    model = copy.deepcopy(master).to(torch.bfloat16).eval()
    out = {}
    for mode, steps in (("graph", new), ("eager", min(new, 32))):
        params = SamplingParams(max_new_tokens=steps, temperature=1.0, repetition_n=10**9)
        eng = TorchEngine(model, decode=mode)
        eng.generate(prompts, SamplingParams(max_new_tokens=8, temperature=1.0), torch.Generator(device=DEV).manual_seed(0))
        runs = []
        for r in range(3 if mode == "graph" else 1):
            res, sec = timed(eng.generate, prompts, params, torch.Generator(device=DEV).manual_seed(r))
            runs.append(sum(map(len, res.tokens)) / sec)
        out[mode] = {"tokens_per_s": sorted(runs)[len(runs) // 2], "runs": runs, "new_tokens": steps,
                     "ms_per_step": 1000 * len(prompts) / sorted(runs)[len(runs) // 2]}
        log("TorchEngine", mode, f"{out[mode]['tokens_per_s']:.0f} tok/s", [round(x) for x in runs])
    return out


def truncation_check(eng, prompts) -> dict:
    """Early truncation in the vLLM path: vLLM stops a request right after its n-th confident token
    (raw output = kept tokens + the forced stop) and VLLMEngine returns exactly the kept tokens."""
    from vllm import SamplingParams as VSP, TokensPrompt

    from model.generation import SamplingParams
    from tasks.train.rl.engines import repetition_cut
    from tasks.train.rl.vllm_m1 import TRUNCATION_KEY

    n, p, stop = 4, 0.9, 0
    params = SamplingParams(max_new_tokens=256, temperature=1.0, stop_token_ids=(stop,), repetition_n=n, repetition_p=p)
    out = eng.generate(prompts, params, torch.Generator(device=DEV).manual_seed(3))
    raw = eng.llm.generate(
        [TokensPrompt(prompt_token_ids=q) for q in prompts],
        [VSP(temperature=1.0, max_tokens=256, stop_token_ids=[stop], logprobs=0, seed=1000 + i, detokenize=False,
             extra_args={TRUNCATION_KEY: {"n": n, "p": p, "stop": stop}}) for i in range(len(prompts))],
        use_tqdm=False)
    exact, late, cuts, missed = 0, 0, 0, 0
    for r in raw:
        c = r.outputs[0]
        lps = [d[t].logprob for t, d in zip(c.token_ids, c.logprobs)]
        cut = repetition_cut(lps, n, math.log(p))
        if cut is None:
            continue
        cuts += 1
        stopped = c.finish_reason == "stop" and c.token_ids[-1] == stop
        exact += stopped and len(c.token_ids) == cut + 1
        late += stopped and len(c.token_ids) == cut + 2
        missed += not stopped
    return {"n": n, "p": p, "engine_finish": {k: out.finish_reasons.count(k) for k in set(out.finish_reasons)},
            "engine_mean_len": sum(map(len, out.tokens)) / len(out.tokens),
            "raw_requests": len(raw), "raw_with_a_run_of_n": cuts, "raw_stopped_right_after_nth": exact,
            "raw_stopped_one_token_late": late, "raw_not_stopped": missed,
            "engine_cuts_consistent": all(
                r != "repetition" or repetition_cut(lp, n, math.log(p)) == len(t)
                for t, lp, r in zip(out.tokens, out.logprobs, out.finish_reasons))}


def part_random(res: dict) -> None:
    from model.checkpoint import vllm_weight_names
    from model.generation import SamplingParams
    from vllm.model_executor.models.minimax_text_01 import MiniMaxText01ForCausalLM

    steps = os.environ.get("M1_RANDOM_STEPS", ",".join(RANDOM_STEPS)).split(",")
    router = os.environ.get("M1_ROUTER", "bf16")
    res["steps"], res["router"] = steps, router
    master = random_policy(32768)
    names: list[str] = []
    load = MiniMaxText01ForCausalLM.load_weights

    def recording(self, weights):  # the names vLLM itself consumes, for the repo's list
        return load(self, ((names.append(k), (k, t))[1] for k, t in weights))

    MiniMaxText01ForCausalLM.load_weights = recording
    eng, vm = engine_for(master, "random", res, router)
    MiniMaxText01ForCausalLM.load_weights = load
    if "names" in steps:
        (WORK / "vllm_loaded_names.txt").write_text("".join(n + "\n" for n in sorted(names)))
        res["loaded_names_match_repo_list"] = set(names) == vllm_weight_names(master.config)
    res["lm_head_dtype"] = str(vm.lm_head.weight.dtype)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 32768, (32,), generator=g).tolist() for _ in range(64)]
    params = SamplingParams(max_new_tokens=256, temperature=1.0, repetition_n=10**9)
    trainers = Trainers(master)
    if "figure3" in steps:
        res["figure3"] = figure3(eng, vm, trainers, prompts, params, "random" if router == "bf16" else f"random_router_{router}")
        dump(res)
    if "layers" in steps:
        res["layers"] = layer_diff(eng, vm, master)
        dump(res)
    if "switches" not in steps:
        return
    switches = {}
    for aligned in (False, True):
        for prefill in ("vllm", "m1"):
            vm.set_aligned(aligned)
            vm.set_prefill(prefill)
            switches[f"aligned={aligned},prefill={prefill}"] = prompt_logprob_error(eng, master, n=2)
    vm.set_aligned(True)
    vm.set_prefill("vllm")
    res["switches_prompt_logprob_err"] = switches
    log("switches", switches)
    dump(res)
    if "sync" not in steps:
        return
    updated = random_policy(32768, seed=1)
    before = figure3_one(eng, vm, Trainers(updated), prompts[:16], params)
    _, res["sync_s"] = timed(eng.sync_weights, updated)
    after = figure3_one(eng, vm, Trainers(updated), prompts[:16], params)
    res["weight_sync"] = {"pearson_before_sync": before, "pearson_after_sync": after}
    log("sync", res["weight_sync"])
    res["truncation"] = truncation_check(eng, prompts)
    log("truncation", res["truncation"])
    eng.sync_weights(master)
    dump(res)
    res["throughput"] = {"prompts": len(prompts), "prompt_len": 32, "new_tokens": 256,
                         "vllm": throughput_vllm(eng, prompts, 256)}
    dump(res)
    res["throughput"]["torch"] = throughput_torch(master, prompts, 256)


def figure3_one(eng, vm, trainers: Trainers, prompts, params) -> float:
    """Pearson r of vLLM (fp32 head) against the trainer's fp32-head probabilities."""
    out = eng.generate(prompts, params, torch.Generator(device=DEV).manual_seed(2))
    p_vllm = [math.exp(x) for lps in out.logprobs for x in lps]
    return compare(p_vllm, trainers.probs([p + t for p, t in zip(prompts, out.tokens)], [len(p) for p in prompts])["fp32_head"])["pearson"]


def part_trunc(res: dict) -> None:
    master = random_policy(32768)
    eng, vm = engine_for(master, "trunc", res)
    g = torch.Generator().manual_seed(0)
    res["truncation"] = truncation_check(eng, [torch.randint(0, 32768, (32,), generator=g).tolist() for _ in range(64)])
    log("truncation", res["truncation"])


def part_v200k(res: dict) -> None:
    from model.generation import SamplingParams

    master = random_policy(200064)
    eng, vm = engine_for(master, "v200k", res)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 200064, (32,), generator=g).tolist() for _ in range(64)]
    params = SamplingParams(max_new_tokens=256, temperature=1.0, repetition_n=10**9)
    res["figure3"] = figure3(eng, vm, Trainers(master), prompts, params, "v200k")


def part_trained(res: dict) -> None:
    from model.generation import SamplingParams
    from tasks.envs.params import EnvParams
    from tasks.envs.registry import get_task
    from tasks.train.policy import encode_prompt, load_policy

    model, tok = load_policy(ROOT / "runs/sft/policy")
    master = model.to(DEV).eval()
    eng, vm = engine_for(master, "trained", res)
    items = get_task("arithmetic", EnvParams()).generate(64, seed=5, difficulty=2)
    prompts = [encode_prompt(tok, it["question"]) for it in items for _ in range(4)]
    params = SamplingParams(max_new_tokens=48, temperature=1.0, stop_token_ids=(tok.eos_token_id,), repetition_n=10**9)
    res["figure3"] = figure3(eng, vm, Trainers(master), prompts, params, "trained")


def part_kernel(res: dict) -> None:
    """``fused_linear_logprobs`` at fp32 (the RL trainer's master weights) and bf16 against fp64
    log-softmax: log-probs, entropies and both input gradients; the tiles chosen and the shared
    memory Triton allocates for them; forward and backward time after a warm-up."""
    from kernels.logprobs import fused_linear as fl

    for N, d, V in ((4096, 1024, 32768), (1024, 6144, 200064)):
        for dtype in (torch.float32, torch.bfloat16):
            key = f"N={N},d={d},V={V},{str(dtype).removeprefix('torch.')}"
            row = res[key] = {"tiles": fl._config(fl.FWD_CONFIG, d, dtype.itemsize)}
            try:
                row["shared_fwd"], row["shared_bwd"] = (fl.shared_memory_bytes(b, dtype, d) for b in (False, True))
            except Exception as e:
                row["shared_error"] = f"{type(e).__name__}: {e}"[:300]
            try:
                g = torch.Generator(device=DEV).manual_seed(0)
                h = (torch.randn(N, d, device=DEV, generator=g) * 0.5).to(dtype).requires_grad_()
                w = (torch.randn(V, d, device=DEV, generator=g) * 4 / d**0.5).to(dtype).requires_grad_()
                t = torch.randint(0, V, (N,), device=DEV, generator=g)
                g_lp, g_ent = torch.randn(N, device=DEV, generator=g), torch.randn(N, device=DEV, generator=g)
                for _ in range(2):  # the first call compiles
                    h.grad = w.grad = None
                    (lp, ent), row["fwd_ms"] = timed(fl.fused_linear_logprobs, h, w, t)
                    _, row["bwd_ms"] = timed(torch.autograd.backward, (lp, ent), (g_lp, g_ent))
                row["fwd_ms"], row["bwd_ms"] = 1000 * row["fwd_ms"], 1000 * row["bwd_ms"]
                h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
                logp = torch.log_softmax(h64 @ w64.t(), dim=-1)
                rlp = logp.gather(-1, t[:, None])[:, 0]
                rent = -(logp.exp() * logp).sum(-1)
                torch.autograd.backward((rlp, rent), (g_lp.double(), g_ent.double()))
                row.update(err_logprob=rel(lp, rlp), err_entropy=rel(ent, rent), err_grad_h=rel(h.grad, h64.grad),
                           err_grad_w=rel(w.grad, w64.grad))
                del h64, w64, logp, rlp, rent
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {e}"[:500]
            log("kernel", key, {k: v for k, v in row.items() if k != "tiles"})
            dump(res)
            torch.cuda.empty_cache()


# python -c RL_RUNNER ARGS = python -m tasks.train.rl.train ARGS where polars is missing (the GPU image):
# RLData.load's one polars call, read_parquet(path).iter_rows(named=True), goes through pyarrow. The
# stand-in exists only during that call, so libraries probing for polars (mlflow) still find none.
RL_RUNNER = """import sys, types
import pyarrow.parquet as pq
from tasks.train.rl import data, train

class Frame:
    def __init__(self, table):
        self.table = table

    def iter_rows(self, named=True):
        return iter(self.table.to_pylist())

load = data.RLData.load.__func__

def load_with_pyarrow(cls, data_dir):
    sys.modules["polars"] = types.SimpleNamespace(read_parquet=lambda path: Frame(pq.read_table(path)))
    try:
        return load(cls, data_dir)
    finally:
        del sys.modules["polars"]

data.RLData.load = classmethod(load_with_pyarrow)
train.main(sys.argv[1:])
"""


def part_rl(res: dict) -> None:
    """A few RL steps with vLLM rollouts from the tiny SFT policy on data/rl: the fp32 trainer (fused
    kernels), a weight sync after each step's updates, MLflow into a sqlite store."""
    import shutil

    out, params = WORK / "rl", WORK / "params.yaml"
    shutil.rmtree(out, ignore_errors=True)
    params.write_text("rl: {}\n")  # the dataclasses' defaults (the shipped file may hold others' work in progress)
    db = WORK / "vllm_rl_mlflow.db"
    db.unlink(missing_ok=True)
    steps = int(os.environ.get("M1_RL_STEPS", "4"))
    cmd = [sys.executable, "-c", RL_RUNNER, "--policy", str(ROOT / "runs/sft/policy"),
           "--data", str(ROOT / "data/rl"), "--output", str(out), "--params", str(params),
           "--set", "rollout_engine=vllm", "--set", f"steps={steps}", "--set", f"eval_every={steps}",
           "--set", "eval_prompts=16", "--set", f"checkpoint_every={steps}", "--set", "run_name=vllm-h200",
           "--set", f"vllm.cuda_graphs={os.environ.get('M1_BENCH_GRAPHS', '1') == '1'}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}", "GIT_PYTHON_REFRESH": "quiet"}
    res["command"] = "python -m tasks.train.rl.train " + " ".join(cmd[3:])
    t0 = time.time()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=PARTS["rl"] - 30, env=env)
        res["returncode"], res["tail"] = done.returncode, (done.stdout + done.stderr)[-4000:]
        if done.returncode:
            res["error"] = f"the RL run exited with {done.returncode}"
    except subprocess.TimeoutExpired as e:
        res["error"], res["tail"] = "the RL run timed out", str(e.stdout or "")[-2000:] + str(e.stderr or "")[-2000:]
    res["seconds"] = time.time() - t0
    if (out / "metrics.jsonl").exists():
        res["metrics"] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
        (WORK / "vllm_rl_metrics.jsonl").write_text((out / "metrics.jsonl").read_text())
    try:
        import mlflow

        client = mlflow.tracking.MlflowClient(f"sqlite:///{db}")
        run = client.search_runs([client.get_experiment_by_name("m1-rl").experiment_id])[0]
        res["mlflow"] = {"run_id": run.info.run_id, "status": run.info.status,
                         "prob_pearson": [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "health/prob_pearson")]}
    except Exception as e:
        res["mlflow"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    log("rl", res.get("error", "ok"), res.get("mlflow"))


def part_router32(res: dict) -> None:
    """Figure 3 on the random export with vLLM choosing experts on fp32 router logits."""
    os.environ["M1_ROUTER"], os.environ["M1_RANDOM_STEPS"] = "fp32", "figure3"
    part_random(res)


SPEED_ROWS = (  # (prompts, log-probs, per-request seeds, new tokens)
    (64, True, True, 256), (64, False, True, 256), (64, True, False, 256), (64, False, False, 256),
    (64, True, True, 1), (256, True, True, 256), (256, False, False, 256),
)


def speed_rows(llm, res: dict, deadline: float) -> None:
    """tokens/s of ``llm.generate`` (median of 3 after a warm-up) for each of ``SPEED_ROWS``, EOS ignored."""
    from vllm import SamplingParams as VSP, TokensPrompt

    g = torch.Generator().manual_seed(0)
    prompts = [TokensPrompt(prompt_token_ids=torch.randint(0, 32768, (32,), generator=g).tolist()) for _ in range(256)]
    res["rows"] = []
    for n, logprobs, seeded, new in SPEED_ROWS:
        if time.time() > deadline:
            break
        runs = []
        for r in range(4):
            sp = [VSP(temperature=1.0, max_tokens=new, ignore_eos=True, detokenize=False, logprobs=0 if logprobs else None,
                      seed=1000 * r + i if seeded else None) for i in range(n)]
            _, sec = timed(llm.generate, prompts[:n], sp, use_tqdm=False)
            if r:
                runs.append(n * new / sec)
        row = {"prompts": n, "logprobs": logprobs, "seeds": seeded, "new_tokens": new, "runs": runs,
               "tokens_per_s": sorted(runs)[1], "ms_per_step": 1000 * n / sorted(runs)[1]}
        res["rows"].append(row)
        log("speed", row)
        dump(res)


def part_speed(res: dict, prefill: str = "m1") -> None:
    """``VLLMEngine`` (the RL configuration: engine core in this process) on the random export."""
    t_end = time.time() + PARTS["speed"] - 40
    master = random_policy(32768)
    eng, vm = engine_for(master, "speed", res, prefill=prefill)
    speed_rows(eng.llm, res, t_end - 25)
    from vllm import SamplingParams as VSP, TokensPrompt

    g = torch.Generator().manual_seed(1)
    prompts = [TokensPrompt(prompt_token_ids=torch.randint(0, 32768, (32,), generator=g).tolist()) for _ in range(64)]
    sp = [VSP(temperature=1.0, max_tokens=64, ignore_eos=True, detokenize=False, logprobs=0, seed=i) for i in range(64)]
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as prof:
        _, sec = timed(eng.llm.generate, prompts, sp, use_tqdm=False)
    events = prof.key_averages()
    device_us = sum(e.self_device_time_total for e in events)
    res["profile"] = {"wall_ms_per_step": 1000 * sec / 64, "device_ms_per_step": device_us / 1000 / 64}
    (WORK / "vllm_profile.txt").write_text(
        f"64 prompts x 64 new tokens (logprobs, seeds): wall {1000 * sec / 64:.2f} ms/step, GPU kernels "
        f"{device_us / 1000 / 64:.2f} ms/step\n\n"
        + events.table(sort_by="self_device_time_total", row_limit=25) + "\n\n"
        + events.table(sort_by="self_cpu_time_total", row_limit=40))
    log("profile", res["profile"])


def part_speed_vp(res: dict) -> None:
    """``part_speed`` with vLLM's lightning prefill instead of the trainer's kernel (rl.vllm.prefill)."""
    part_speed(res, prefill="vllm")


def part_speed_mp(res: dict) -> None:
    """vLLM's own MiniMax class with its engine core in a process of its own (vLLM's default; no
    logits processor, so no in-process weight sync), same export and rows."""
    from vllm import LLM

    from model.checkpoint import save_vllm_export

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    t_end = time.time() + PARTS["speed_mp"] - 20
    master = random_policy(32768)
    export = save_vllm_export(master, WORK / "export_speed_mp", dtype=torch.bfloat16, head_fp32=True)
    del master
    graphs = {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY", "cudagraph_capture_sizes": [2**i for i in range(9)]}
    llm, res["load_s"] = timed(LLM, model=str(export), skip_tokenizer_init=True, dtype="bfloat16", seed=0,
                               gpu_memory_utilization=0.3, max_model_len=4096, max_num_seqs=256,
                               enable_prefix_caching=False, logprobs_mode="processed_logprobs", compilation_config=graphs)
    speed_rows(llm, res, t_end)


def dump(res: dict) -> None:
    (WORK / f"{res['part']}.json").write_text(json.dumps(res, indent=1, default=str))


def run_part(name: str) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    torch.manual_seed(0)
    res = {"part": name}
    try:
        {"kernel": part_kernel, "random": part_random, "rl": part_rl, "v200k": part_v200k, "trained": part_trained,
         "trunc": part_trunc, "router32": part_router32, "speed": part_speed, "speed_vp": part_speed_vp,
         "speed_mp": part_speed_mp}[name](res)
    except Exception as e:  # the driver records what broke; results so far are kept
        import traceback

        res["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    dump(res)
    os._exit(0)  # vLLM's engine threads need not be joined


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--part", choices=list(PARTS), help="run one part in this process (the driver's child)")
    ap.add_argument("--parts", default="random,rl,v200k,trained", help="comma-separated parts to run, in this order "
                                                                        "(trunc: the truncation check of random alone)")
    ap.add_argument("--deadline", type=float, default=530.0, help="seconds for all parts together")
    ap.add_argument("--random-steps", default=",".join(RANDOM_STEPS), help="what the random part measures, comma-separated: "
                                                                          + ", ".join(RANDOM_STEPS))
    ap.add_argument("--rl-steps", type=int, default=4, help="RL steps of the rl part")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    if args.part:
        run_part(args.part)
    t_end = time.time() + args.deadline
    args.output.mkdir(parents=True, exist_ok=True)
    results, logs, graphs = {}, [], "1"
    for name in args.parts.split(","):
        left = t_end - time.time()
        if left < 40:
            results[name] = {"part": name, "error": f"not run: {left:.0f}s left of the deadline"}
            continue
        log(f"part {name} (up to {min(PARTS[name], left):.0f}s)")
        t0 = time.time()
        child = subprocess.Popen([sys.executable, __file__, "--output", str(args.output), "--part", name],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                 env={**os.environ, "M1_BENCH_GRAPHS": graphs, "M1_RANDOM_STEPS": args.random_steps,
                                      "M1_RL_STEPS": str(args.rl_steps)})
        try:
            text = child.communicate(timeout=min(PARTS[name], left))[0]
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # the part and anything it started (the RL run)
            text = child.communicate()[0] + "\nTIMEOUT"
        logs.append(f"===== {name} ({time.time() - t0:.0f}s)\n{text[-20000:]}")
        path = WORK / f"{name}.json"
        results[name] = json.loads(path.read_text()) if path.exists() else {"part": name, "error": "no result (crashed)"}
        if results[name].get("cuda_graphs") is False:
            graphs = "0"  # later parts start eager at once instead of failing first
        if "TIMEOUT" in text[-10:]:
            results[name]["error"] = results[name].get("error", "") + f" timed out after {time.time() - t0:.0f}s"
        log(f"part {name} done in {time.time() - t0:.0f}s" + (f": {results[name]['error']}" if "error" in results[name] else ""))
        (args.output / "vllm_h200.json").write_text(json.dumps(results, indent=1, default=str))
        (args.output / "vllm_h200.log").write_text("\n".join(logs))
    for extra in ("vllm_loaded_names.txt", "vllm_rl_metrics.jsonl", "vllm_profile.txt", "vllm_rl_mlflow.db"):
        if (WORK / extra).exists():
            (args.output / extra).write_bytes((WORK / extra).read_bytes())
    try:
        plots(results, args.output, WORK, RANDOM["num_hidden_layers"])
    except Exception as e:
        print("plots failed:", e)
    print(summary(results))


if __name__ == "__main__":
    main()
