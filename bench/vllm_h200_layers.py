"""Where ``bench/vllm_h200.py``'s ``random`` part finds vLLM's error against ours: per-layer and
per-component activations of a long prefill and the prompt log-probs, each against an fp32 reference
on the bf16 weights both engines hold (the ``layers`` and ``switches`` steps). Runs on the GPU with
vLLM on the path, inside that benchmark's part process.
"""

from __future__ import annotations

import copy

import torch

DEV = "cuda"


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


MOE_VARIANTS = {  # our SparseMoE in bf16 with one part changed: (router logits, silu-and-mul in fp32, fp32 sum)
    "sum32": ("bf16", False, True),
    "act32": ("bf16", True, False),
    "router32": ("fp32", False, False),
    "router_vllm": ("vllm", False, False),
    "all32": ("fp32", True, True),
}


def moe_variant(moe, x: torch.Tensor, router: str, act32: bool, sum32: bool):
    """``SparseMoE.forward`` on bf16 ``x`` [N, d] with the router logits from the bf16 gate (ours), an
    fp32 GEMM ("fp32") or that rounded to bf16 ("vllm": vLLM's fp32 gate, routed on bf16 logits);
    ``silu(w1 x) * w3 x`` in fp32 before one rounding (vLLM's silu_and_mul); the weighted expert
    outputs summed in fp32 -> (out [N, d] bf16, each row's experts, sorted [N, k])."""
    import torch.nn.functional as F

    if router == "bf16":
        logits = moe.gate(x)
    else:
        logits = F.linear(x.float(), moe.gate.weight.float())
        if router == "vllm":
            logits = logits.bfloat16()
    probs = torch.softmax(logits.float(), dim=-1)  # [N, E]
    top_w, top_i = torch.topk(probs, moe.cfg.num_experts_per_tok, dim=-1)
    top_w = top_w / top_w.sum(-1, keepdim=True)
    out = torch.zeros(x.shape, dtype=torch.float32 if sum32 else x.dtype, device=x.device)
    for e, expert in enumerate(moe.experts):
        tok, slot = torch.where(top_i == e)
        if tok.numel() == 0:
            continue
        xe = x[tok]
        if act32:
            h = (F.silu(expert.w1(xe).float()) * expert.w3(xe).float()).to(x.dtype)
        else:
            h = F.silu(expert.w1(xe)) * expert.w3(xe)
        out.index_add_(0, tok, (expert.w2(h) * top_w[tok, slot, None]).to(out.dtype))
    return out.to(x.dtype), top_i.sort(-1).values


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
            for name, variant in MOE_VARIANTS.items():
                m_var, top_var = moe_variant(ours.model.layers[i].block_sparse_moe, x2.bfloat16(), *variant)
                add(f"local/moe/ours_{name}/{i}", rel(m_var.float(), m_ref))
                add(f"routing_flips/ours_{name}/{i}", (top_var != top["ref"]).any(-1).float().mean().item())
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
