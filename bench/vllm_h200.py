"""python3 bench/vllm_h200.py --output OUT   (on the H200 with vLLM 0.23 on PYTHONPATH; bench/vllm_h200.sh)

Issue 15 on one GPU: our model against vLLM 0.23, every part in its own process under one deadline
(a part that hangs or crashes costs its own results only), merged into ``OUT/vllm_h200.json``:

- ``random``: the issue's random 8-layer export (d=1024, 8 heads x 128, 4 experts, V=32768, head
  weights x12 so distributions are peaked) through ``VLLMEngine``: the names vLLM loads, Figure 3
  (vLLM with a bf16 and an fp32 head against the trainer's bf16 head, fp32 head and fp32 model),
  per-layer and per-component activations of a 1024-token prefill against an fp32 reference on the
  same weights, the switches of ``M1VLLMForCausalLM`` (aligned decay / eps, our prefill kernel),
  weight sync, early truncation, and rollout tokens/s of vLLM and of TorchEngine (eager, CUDA graph).
- ``rl``: ``python -m tasks.train.rl.train --set rollout_engine=vllm`` from the tiny SFT policy.
- ``v200k``: Figure 3 at M1's vocabulary, V=200064.
- ``trained``: Figure 3 on the SFT policy (runs/sft/policy) answering arithmetic prompts.

Also writes ``vllm_agreement.png``, ``vllm_layers.png``, ``vllm_loaded_names.txt`` and
``vllm_rl_metrics.jsonl``; prints a summary table last.
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
WORK = Path("/tmp/vbench")
DEV = "cuda"
PARTS = {"random": 230, "rl": 150, "v200k": 120, "trained": 110, "trunc": 80}  # seconds each may take, in priority order
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


def engine_for(model, name: str, res: dict):
    """``VLLMEngine`` with rl.vllm's defaults (CUDA graphs); if that cannot start, eager, noted in ``res``."""
    from tasks.train.rl.config import VLLMParams
    from tasks.train.rl.engines import VLLMEngine

    graphs = os.environ.get("M1_BENCH_GRAPHS", "1") == "1"
    try:
        eng, seconds = timed(VLLMEngine, model, WORK / f"export_{name}", VLLMParams(cuda_graphs=graphs), seed=0)
    except Exception as e:
        if not graphs:
            raise
        res["cuda_graphs_error"] = f"{type(e).__name__}: {e}"[:1000]
        log("CUDA-graph engine failed, eager instead:", res["cuda_graphs_error"])
        graphs = False
        eng, seconds = timed(VLLMEngine, model, WORK / f"export_{name}", VLLMParams(cuda_graphs=False), seed=0)
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


def reference_copy(master):
    """fp32 arithmetic on the bf16-rounded weights vLLM holds (the fp32 master head kept), lightning
    through the plain-PyTorch reference: the yardstick for both engines' bf16 arithmetic."""
    ref = copy.deepcopy(master).to(torch.bfloat16).float().eval()
    for layer in ref.model.layers:
        if hasattr(layer.self_attn, "backend"):
            layer.self_attn.backend = "reference"
    with torch.no_grad():
        ref.lm_head.weight.copy_(master.lm_head.weight)
    return ref


def compare(p_infer: list[float], p_train: list[float]) -> dict[str, float]:
    a, b = torch.tensor(p_infer, dtype=torch.float64), torch.tensor(p_train, dtype=torch.float64)
    d = (a - b).abs()
    return {"pearson": torch.corrcoef(torch.stack([a, b]))[0, 1].item(), "mean_abs_dp": d.mean().item(),
            "max_abs_dp": d.max().item(), "tokens": len(a)}


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


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp(min=1e-30)).item()


class Capture:
    """Forward hooks on vLLM's decoder layers: inputs and outputs of each norm, attention and MoE."""

    def __init__(self, vm) -> None:
        self.rec: dict[str, list[torch.Tensor]] = {}
        self.handles = []
        for i, layer in enumerate(vm.model.layers):
            for part in ("input_layernorm", "post_attention_layernorm", "block_sparse_moe"):
                self._io(getattr(layer, part), f"{i}.{part}")
            self._io(layer.block_sparse_moe.gate, f"{i}.gate")
            self.handles.append(layer.self_attn.register_forward_hook(self._attn(f"{i}.attn"), with_kwargs=True))
            self._io(layer, f"{i}.layer")
        self._io(vm.model.norm, "final_norm")

    def _put(self, key: str, t) -> None:
        if isinstance(t, tuple):
            t = t[0]
        self.rec.setdefault(key, []).append(t.detach().float().clone())

    def _io(self, module, key: str) -> None:
        def hook(mod, args, kwargs, out):
            x = args[0] if args else next(iter(kwargs.values()))
            self._put(key + ".in", x)
            self._put(key + ".out", out)
        self.handles.append(module.register_forward_hook(hook, with_kwargs=True))

    def _attn(self, key: str):
        def hook(mod, args, kwargs, out):
            self._put(key + ".in", kwargs["hidden_states"])
            self._put(key + ".out", kwargs["output"])
        return hook

    def take(self, T: int) -> dict[str, torch.Tensor]:
        got = {k: torch.cat(v)[:T] for k, v in self.rec.items()}
        self.rec = {}
        return got

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def layer_diff(eng, vm, master, T: int = 1024, n: int = 4) -> dict:
    """Per layer: hidden states of vLLM and of our bf16 model against an fp32 reference on vLLM's
    (bf16-rounded) weights; per component: each one's error on vLLM's own input (local error),
    lightning attention by 256-token block; MoE routing differences; prompt log-prob error."""
    from vllm import SamplingParams, TokensPrompt

    from model.modeling import rope_cos_sin

    ours = copy.deepcopy(master).to(torch.bfloat16).eval()
    ref = reference_copy(master)
    cap = Capture(vm)
    g = torch.Generator().manual_seed(7)
    acc: dict[str, list[float]] = {}

    def add(key, value):
        acc.setdefault(key, []).append(value)

    cfg = master.config
    for _ in range(n):
        prompt = torch.randint(0, cfg.vocab_size, (T,), generator=g).tolist()
        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False, temperature=1.0)
        res = eng.llm.generate([TokensPrompt(prompt_token_ids=prompt)], sp, use_tqdm=False)[0]
        v = cap.take(T)
        ids = torch.tensor([prompt], device=DEV)
        hs = {}
        for name, model in (("ours", ours), ("ref", ref)):
            hooks = [layer.register_forward_hook(lambda m, a, o, i=i, name=name: hs.__setitem__((name, i), o[0][0].float()))
                     for i, layer in enumerate(model.model.layers)]
            hs[(name, "final")] = model.model(ids)[0][0].float()
            for h in hooks:
                h.remove()
        rope = {dt: rope_cos_sin(torch.arange(T, device=DEV)[None], cfg.rotary_dim, cfg.rope_theta, dt)
                for dt in (torch.bfloat16, torch.float32)}
        for i in range(cfg.num_hidden_layers):
            add(f"hidden/vllm/{i}", rel(v[f"{i}.layer.out"], hs[("ref", i)]))
            add(f"hidden/ours/{i}", rel(hs[("ours", i)], hs[("ref", i)]))
            kind = ref.model.layers[i].kind
            x = v[f"{i}.input_layernorm.in"]
            add(f"local/input_norm/vllm/{i}", rel(v[f"{i}.input_layernorm.out"], ref.model.layers[i].input_layernorm(x)))
            add(f"local/input_norm/ours/{i}", rel(ours.model.layers[i].input_layernorm(x.bfloat16()), ref.model.layers[i].input_layernorm(x)))
            h = v[f"{i}.attn.in"][None]  # [1, T, d]
            args = {m: ((h.to(dt), None, None, False) if kind == "linear_attention" else (h.to(dt), rope[dt], None, None, False))
                    for m, dt in (("ours", torch.bfloat16), ("ref", torch.float32))}
            a_ref = ref.model.layers[i].self_attn(*args["ref"])[0][0]
            a_ours = ours.model.layers[i].self_attn(*args["ours"])[0][0].float()
            a_vllm = v[f"{i}.attn.out"]
            add(f"local/attn/vllm/{i}", rel(a_vllm, a_ref))
            add(f"local/attn/ours/{i}", rel(a_ours, a_ref))
            if kind == "linear_attention":
                for b in range(0, T, 256):
                    add(f"block/vllm/{i}/{b}", rel(a_vllm[b:b + 256], a_ref[b:b + 256]))
                    add(f"block/ours/{i}/{b}", rel(a_ours[b:b + 256], a_ref[b:b + 256]))
            x2 = v[f"{i}.block_sparse_moe.in"]
            m_ref, logits_ref = ref.model.layers[i].block_sparse_moe(x2)
            m_ours, logits_ours = ours.model.layers[i].block_sparse_moe(x2.bfloat16())
            add(f"local/moe/vllm/{i}", rel(v[f"{i}.block_sparse_moe.out"], m_ref))
            add(f"local/moe/ours/{i}", rel(m_ours.float(), m_ref))
            k = cfg.num_experts_per_tok
            top = {name: torch.topk(torch.softmax(lg.float(), -1), k, -1).indices.sort(-1).values
                   for name, lg in (("ref", logits_ref), ("ours", logits_ours),
                                    ("vllm", v[f"{i}.gate.out"].bfloat16()))}  # FusedMoE routes on bf16 logits
            add(f"routing_flips/vllm/{i}", (top["vllm"] != top["ref"]).any(-1).float().mean().item())
            add(f"routing_flips/ours/{i}", (top["ours"] != top["ref"]).any(-1).float().mean().item())
        add("hidden/vllm/final", rel(v["final_norm.out"], hs[("ref", "final")]))
        add("hidden/ours/final", rel(hs[("ours", "final")], hs[("ref", "final")]))
        lp_ref = torch.log_softmax(ref.lm_head(hs[("ref", "final")])[:-1], -1).gather(-1, ids[0, 1:, None])[:, 0]
        lp_vllm = torch.tensor([d[t].logprob for t, d in zip(prompt[1:], res.prompt_logprobs[1:])], device=DEV)
        add("prompt_logprob/vllm_vs_ref_mean_abs", (lp_vllm - lp_ref).abs().mean().item())
        lp_ours = torch.log_softmax(torch.nn.functional.linear(hs[("ours", "final")][:-1], master.lm_head.weight), -1)
        lp_ours = lp_ours.gather(-1, ids[0, 1:, None])[:, 0]
        add("prompt_logprob/ours_vs_ref_mean_abs", (lp_ours - lp_ref).abs().mean().item())
        add("prompt_logprob/vllm_vs_ours_mean_abs", (lp_vllm - lp_ours).abs().mean().item())
    cap.close()
    return {k: sum(x) / len(x) for k, x in acc.items()}


@torch.no_grad()
def prompt_logprob_error(eng, master, T: int = 1024, n: int = 4) -> float:
    """Mean |log p_vLLM - log p_ref| over prompt tokens (fp32 reference on vLLM's weights)."""
    from vllm import SamplingParams, TokensPrompt

    ref = reference_copy(master)
    g = torch.Generator().manual_seed(7)
    errs = []
    for _ in range(n):
        prompt = torch.randint(0, master.config.vocab_size, (T,), generator=g).tolist()
        sp = SamplingParams(max_tokens=1, prompt_logprobs=0, detokenize=False)
        res = eng.llm.generate([TokensPrompt(prompt_token_ids=prompt)], sp, use_tqdm=False)[0]
        ids = torch.tensor([prompt], device=DEV)
        lp = torch.log_softmax(ref(ids).logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None])[:, 0]
        lv = torch.tensor([d[t].logprob for t, d in zip(prompt[1:], res.prompt_logprobs[1:])], device=DEV)
        errs.append((lv - lp).abs().mean().item())
    return sum(errs) / len(errs)


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

    master = random_policy(32768)
    names: list[str] = []
    load = MiniMaxText01ForCausalLM.load_weights

    def recording(self, weights):  # the names vLLM itself consumes, for the repo's list
        return load(self, ((names.append(k), (k, t))[1] for k, t in weights))

    MiniMaxText01ForCausalLM.load_weights = recording
    eng, vm = engine_for(master, "random", res)
    MiniMaxText01ForCausalLM.load_weights = load
    (WORK / "vllm_loaded_names.txt").write_text("".join(n + "\n" for n in sorted(names)))
    res["loaded_names_match_repo_list"] = set(names) == vllm_weight_names(master.config)
    res["lm_head_dtype"] = str(vm.lm_head.weight.dtype)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 32768, (32,), generator=g).tolist() for _ in range(64)]
    params = SamplingParams(max_new_tokens=256, temperature=1.0, repetition_n=10**9)
    trainers = Trainers(master)
    res["figure3"] = figure3(eng, vm, trainers, prompts, params, "random")
    dump(res)
    res["layers"] = layer_diff(eng, vm, master)
    dump(res)
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


def part_rl(res: dict) -> None:
    import shutil

    out, params, policy = WORK / "rl", WORK / "params.yaml", WORK / "policy"
    params.write_text("rl: {}\n")  # the dataclasses' defaults (the shipped file may hold others' work in progress)
    # the fp32 trainer through the PyTorch reference kernels: the fused fp32 log-prob kernel runs out
    # of shared memory on the H200 (seen in this bench's first run; LOG.md issue 15)
    shutil.rmtree(policy, ignore_errors=True)
    shutil.copytree(ROOT / "runs/sft/policy", policy)
    cfg = json.loads((policy / "config.json").read_text())
    (policy / "config.json").write_text(json.dumps({**cfg, "kernel_backend": "reference"}))
    cmd = [sys.executable, "-m", "tasks.train.rl.train", "--policy", str(policy), "--output", str(out),
           "--params", str(params),
           "--set", "rollout_engine=vllm", "--set", "steps=3", "--set", "eval_every=3", "--set", "eval_prompts=32",
           "--set", "checkpoint_every=3", "--set", f"vllm.cuda_graphs={os.environ.get('M1_BENCH_GRAPHS', '1') == '1'}"]
    t0 = time.time()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=PARTS["rl"] - 20)
    res["seconds"], res["returncode"] = time.time() - t0, done.returncode
    res["tail"] = (done.stdout + done.stderr)[-3000:]
    if done.returncode:
        res["error"] = f"the RL run exited with {done.returncode}"
    if (out / "metrics.jsonl").exists():
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
        res["metrics"] = rows
        (WORK / "vllm_rl_metrics.jsonl").write_text((out / "metrics.jsonl").read_text())


def dump(res: dict) -> None:
    (WORK / f"{res['part']}.json").write_text(json.dumps(res, indent=1, default=str))


def run_part(name: str) -> None:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    torch.manual_seed(0)
    res = {"part": name}
    try:
        {"random": part_random, "rl": part_rl, "v200k": part_v200k, "trained": part_trained, "trunc": part_trunc}[name](res)
    except Exception as e:  # the driver records what broke; results so far are kept
        import traceback

        res["error"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    dump(res)
    os._exit(0)  # vLLM's engine threads need not be joined


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(n, h) for n in ("random", "trained", "v200k") for h in ("bf16", "fp32") if (WORK / f"fig3_{n}_{h}.pt").exists()]
    if runs:
        fig, axes = plt.subplots((len(runs) + 1) // 2, 2, figsize=(9, 4.2 * ((len(runs) + 1) // 2)), squeeze=False)
        for ax, (n, h) in zip(axes.flat, runs):
            d = torch.load(WORK / f"fig3_{n}_{h}.pt")
            key = "bf16_head" if h == "bf16" else "fp32_head"
            m = compare(d["p_vllm"], d[key])
            ax.scatter(d[key], d["p_vllm"], s=2, alpha=0.3, linewidths=0)
            ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--")
            ax.set_title(f"{n}: vLLM {h} head vs trainer {h} head\nr = {m['pearson']:.5f}, mean |dp| = {m['mean_abs_dp']:.4f}", fontsize=9)
            ax.set_xlabel("trainer probability (chunked kernel, training path)")
            ax.set_ylabel("vLLM probability (rollout)")
        fig.tight_layout()
        fig.savefig(out / "vllm_agreement.png", dpi=110)
        plt.close(fig)
    layers = results.get("random", {}).get("layers")
    if layers:
        L = RANDOM["num_hidden_layers"]
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
        for who, style in (("vllm", "o-"), ("ours", "s--")):
            axes[0].semilogy(range(L), [layers[f"hidden/{who}/{i}"] for i in range(L)], style, label=f"{who} bf16")
            for comp in ("attn", "moe", "input_norm"):
                axes[1].semilogy(range(L), [layers[f"local/{comp}/{who}/{i}"] for i in range(L)], style, label=f"{who} {comp}")
            blocks = sorted({int(k.split("/")[3]) for k in layers if k.startswith(f"block/{who}/")})
            axes[2].semilogy(blocks, [sum(layers[f"block/{who}/{i}/{b}"] for i in range(L) if f"block/{who}/{i}/{b}" in layers)
                                      / sum(f"block/{who}/{i}/{b}" in layers for i in range(L)) for b in blocks], style, label=who)
        axes[0].set(title="hidden state after each layer vs fp32 reference", xlabel="layer", ylabel="relative error")
        axes[1].set(title="local error of each component on vLLM's own input", xlabel="layer")
        axes[2].set(title="lightning attention local error by 256-token block", xlabel="first position of block")
        for ax in axes:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "vllm_layers.png", dpi=110)
        plt.close(fig)


def summary(results: dict) -> str:
    lines = ["| policy | vLLM head | r vs trainer bf16 head | r vs trainer fp32 head | r vs trainer fp32 model | mean abs dp (same head) | max abs dp |",
             "|---|---|---|---|---|---|---|"]
    for n in ("random", "trained", "v200k"):
        for h, f3 in results.get(n, {}).get("figure3", {}).items():
            same = f3["vs_trainer_bf16_head" if h == "bf16" else "vs_trainer_fp32_head"]
            r = {k: f"{f3[f'vs_trainer_{k}']['pearson']:.6f}" if f"vs_trainer_{k}" in f3 else "n/a"
                 for k in ("bf16_head", "fp32_head", "fp32_model")}
            lines.append(f"| {n} | {h} | {r['bf16_head']} | {r['fp32_head']} | {r['fp32_model']} | "
                         f"{same['mean_abs_dp']:.5f} | {same['max_abs_dp']:.4f} |")
    tp = results.get("random", {}).get("throughput", {})
    if tp:
        lines += ["", "| engine | tokens/s |", "|---|---|"]
        for k, v in tp.get("vllm", {}).items():
            lines.append(f"| vLLM 0.23, FULL_DECODE_ONLY CUDA graphs, {k} | {v['tokens_per_s']:.0f} |")
        for k, v in tp.get("torch", {}).items():
            lines.append(f"| TorchEngine {k} ({v['new_tokens']} new tokens) | {v['tokens_per_s']:.0f} ({v['ms_per_step']:.2f} ms/step) |")
    for name, r in results.items():
        if "error" in r:
            lines.append(f"part {name}: ERROR {r['error']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--part", choices=list(PARTS), help="run one part in this process (the driver's child)")
    ap.add_argument("--parts", default="random,rl,v200k,trained", help="comma-separated parts to run, in this order "
                                                                        "(trunc: the truncation check of random alone)")
    ap.add_argument("--deadline", type=float, default=530.0, help="seconds for all parts together")
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
                                 env={**os.environ, "M1_BENCH_GRAPHS": graphs})
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
    for extra in ("vllm_loaded_names.txt", "vllm_rl_metrics.jsonl"):
        if (WORK / extra).exists():
            (args.output / extra).write_text((WORK / extra).read_text())
    try:
        plots(results, args.output)
    except Exception as e:
        print("plots failed:", e)
    print(summary(results))


if __name__ == "__main__":
    main()
