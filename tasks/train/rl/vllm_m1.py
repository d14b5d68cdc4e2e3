"""The vLLM 0.23 side of M1 rollouts: a model override and the early-truncation logits processor.

Imported only where vLLM runs (the GPU image, ``pip install -e '.[gpu]'``; vLLM has no CPU build).
``register()`` adds ``M1ForCausalLM`` to vLLM's ``ModelRegistry``; pyproject's ``vllm.general_plugins``
entry point calls it in every vLLM process, ``VLLMEngine`` calls it in its own, and selects the
override for an export of ours with ``hf_overrides={"architectures": ["M1ForCausalLM"]}``.

``M1VLLMForCausalLM`` is vLLM's ``MiniMaxText01ForCausalLM`` with three switches, each settable on
the live model (``LLM.apply_model``), so one engine measures before and after:

- ``head``: ``"fp32"`` (logits from the fp32 head weights and fp32 hidden states, the report's fix,
  section 3.2) or ``"bf16"`` (bf16 weights, bf16 GEMM, bf16 logits: the head before the fix).
  vLLM 0.23's own head is already fp32 arithmetic over the checkpoint's head weights; what ours adds
  is the bf16 "before" and, through ``model.checkpoint.save_vllm_export(head_fp32=True)``, the
  trainer's exact fp32 head weights instead of their bf16 rounding.
- ``aligned``: vLLM computes the lightning decay rates as ``1 - l/(L-1)`` where the trainer (and
  transformers) use ``1 - l/(L-1+1e-5)``, ALiBi's interpolated slopes for head counts that are not
  powers of two, and a lightning output-norm eps of 1e-5 where the trainer uses 1e-6; aligned takes
  the trainer's values.
- ``prefill``: ``"m1"`` (``kernels.lightning_attn``, the trainer's chunked kernel, on the trainer's
  bf16 q, k, v and the slot's recurrent state; any head dim the kernel tiles) or ``"vllm"`` (vLLM's
  lightning prefill, which needs head_dim % 64 == 0). Chosen at load by ``hf_overrides={"m1_prefill"}``.
- ``router``: ``"bf16"`` (vLLM's: fp32 router GEMM, experts chosen on its bf16 rounding) or
  ``"fp32"`` (chosen on the fp32 logits, as the fp32 trainer does). Chosen at load by
  ``hf_overrides={"m1_router"}``, since CUDA graphs capture the routing.

``EarlyTruncation`` ends a request once ``n`` consecutive sampled tokens each had probability above
``p`` (report section 3.2) by forcing its stop token; ``VLLMEngine`` drops that forced token, so
the output equals ``model.generation.TorchEngine``'s rule.
"""

from __future__ import annotations

import math
import types

import torch
import torch.nn.functional as F
from vllm import ModelRegistry
from vllm.model_executor.layers.mamba.linear.minimax_linear_attn import (
    MiniMaxText01LinearAttention,
    linear_attention_prefill_and_mix,
)
from vllm.model_executor.models.minimax_text_01 import MiniMaxText01ForCausalLM
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

import kernels
from model.modeling import LIGHTNING_NORM_EPS, lightning_decay

ARCHITECTURE = "M1ForCausalLM"
HEADS = ("fp32", "bf16")
PREFILLS = ("vllm", "m1")
ROUTERS = ("bf16", "fp32")
TRUNCATION_KEY = "m1_truncation"  # SamplingParams.extra_args[TRUNCATION_KEY] = {"n", "p", "stop"}


def _m1_prefill(q, k, v, kv_cache, slope_rate, block_size, layer_idx=None, **kwargs):
    """vLLM's prefix-prefill signature over ``kernels.lightning_attn``: q, k, v [H, n, D] fp32 of one
    sequence, ``kv_cache`` [H, D, D] its slot's state (updated in place) -> [n, H*D] fp32.

    q, k, v enter in bf16, as in the trainer: vLLM's fp32 silu of its bf16 projection, rounded, is
    bit for bit the trainer's bf16 silu."""
    H, n, D = q.shape
    q, k, v = (t.transpose(0, 1)[None].to(torch.bfloat16) for t in (q, k, v))  # [1, n, H, D]
    o, state = kernels.lightning_attn(q, k, v, slope_rate.reshape(H).float(), initial_state=kv_cache[None].float(),
                                      output_final_state=True)
    kv_cache.copy_(state[0])
    return o[0].reshape(n, H * D).float()


def _prefill_and_mix_m1(self, q, k, v, kv_cache, state_indices_tensor, attn_metadata):
    return linear_attention_prefill_and_mix(
        q=q, k=k, v=v, kv_cache=kv_cache, state_indices_tensor=state_indices_tensor,
        attn_metadata=attn_metadata, slope_rate=self.tp_slope, block_size=self.BLOCK,
        decode_fn=self._decode_infer, prefix_fn=_m1_prefill, layer_idx=self.layer_idx,
    )


def _moe_fp32_router(self, hidden_states: torch.Tensor) -> torch.Tensor:
    """vLLM's ``MiniMaxText01MoE.forward`` choosing experts on the fp32 router logits [n, E]
    instead of their bf16 rounding (FusedMoE's top-k softmax takes fp32 logits)."""
    n, d = hidden_states.shape
    hidden_states = hidden_states.view(-1, self.hidden_size)
    router_logits, _ = self.gate(hidden_states.to(torch.float32))
    return self.experts(hidden_states, router_logits).view(n, d)


class M1VLLMForCausalLM(MiniMaxText01ForCausalLM):
    """vLLM's MiniMax model with the switches of the module docstring (``head``, ``aligned``, ``prefill``)."""

    def __init__(self, *, vllm_config, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        cfg = self.config
        self.head = "fp32" if getattr(cfg, "lm_head_fp32", True) else "bf16"
        self._linear = [(i, layer.self_attn) for i, layer in enumerate(self.model.layers)
                        if isinstance(getattr(layer, "self_attn", None), MiniMaxText01LinearAttention)]
        H, L = cfg.num_attention_heads, cfg.num_hidden_layers
        self._values = {
            False: {i: (a.tp_slope.clone(), a.norm.variance_epsilon) for i, a in self._linear},
            True: {i: (lightning_decay(i, L, H)[a.tp_rank * a.tp_heads : (a.tp_rank + 1) * a.tp_heads].view(-1, 1, 1),
                       LIGHTNING_NORM_EPS) for i, a in self._linear},
        }
        self.set_aligned(True)
        self.set_prefill(getattr(cfg, "m1_prefill", "m1"))  # hf_overrides={"m1_prefill": ...}
        self.router = getattr(cfg, "m1_router", "bf16")  # hf_overrides={"m1_router": ...}
        if self.router not in ROUTERS:
            raise ValueError(f"m1_router={self.router!r}: expected one of {ROUTERS}")
        if self.router == "fp32":
            for layer in self.model.layers:
                moe = getattr(layer, "block_sparse_moe", None)
                if moe is not None:
                    moe.forward = types.MethodType(_moe_fp32_router, moe)

    def set_aligned(self, on: bool) -> None:
        """Trainer's decay rates and lightning-norm eps (on) or vLLM's own (off). Written in place, but
        CUDA graphs captured before a switch keep the eps they were captured with: switch in eager engines."""
        for i, attn in self._linear:
            slope, eps = self._values[on][i]
            attn.tp_slope.copy_(slope)
            attn.norm.variance_epsilon = eps
        self.aligned = on

    def set_prefill(self, kind: str) -> None:
        if kind not in PREFILLS:
            raise ValueError(f"prefill={kind!r}: expected one of {PREFILLS}")
        if kind == "vllm" and self.config.head_dim % 64:
            raise ValueError(f"prefill='vllm' needs head_dim % 64 == 0 (vLLM's lightning prefill asserts it), "
                             f"got {self.config.head_dim}: use prefill='m1'")
        for _, attn in self._linear:
            if kind == "m1":
                attn._prefill_and_mix_infer = types.MethodType(_prefill_and_mix_m1, attn)
            else:
                attn.__dict__.pop("_prefill_and_mix_infer", None)
        self.prefill = kind

    def set_head(self, head: str) -> None:
        if head not in HEADS:
            raise ValueError(f"head={head!r}: expected one of {HEADS}")
        self.head = head

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.head == "bf16":
            w = self.lm_head.weight.to(torch.bfloat16)  # [V_padded, d]
            return F.linear(hidden_states.to(torch.bfloat16), w)[..., : self.config.vocab_size].float()
        return super().compute_logits(hidden_states)  # fp32 weights, fp32 hidden, fp32 GEMM


class EarlyTruncation(LogitsProcessor):
    """Report section 3.2 inside vLLM: once a request's last ``n`` sampled tokens each had
    probability above ``p``, its next token is forced to its stop token, so the engine stops decoding it.

    A request opts in with ``SamplingParams.extra_args[TRUNCATION_KEY] = {"n", "p", "stop"}``. A
    token's probability is that of the temperature-scaled distribution, computed as vLLM's sampler
    computes its log-prob (``log_softmax(logits / T)`` in fp32), so the rule agrees with the log-probs
    the engine returns; p > 0.5 makes the sampled token the argmax, so the argmax's log-prob from
    the step before decides. Exact only without top-k / top-p, which ``VLLMEngine`` ensures. Under
    vLLM's asynchronous scheduling the token sampled last step may still be a placeholder (-1) when
    the next logits arrive; it is credited once known, so the forced stop can come one token late
    (``VLLMEngine`` cuts the reply at the rule's token either way).
    """

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        self.rows: dict[int, dict] = {}

    def is_argmax_invariant(self) -> bool:
        return False  # forcing the stop token changes the argmax

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for i in batch_update.removed:
            self.rows.pop(i, None)
        for i, params, _prompt, out in batch_update.added:
            spec = (params.extra_args or {}).get(TRUNCATION_KEY) if params is not None else None
            self.rows.pop(i, None)
            if spec is not None:
                self.rows[i] = {
                    "n": int(spec["n"]), "threshold": math.log(spec["p"]) if spec["p"] > 0 else -math.inf,
                    "stop": int(spec["stop"]), "temperature": params.temperature if params.temperature >= 1e-5 else 1.0,
                    "out": out, "seen": len(out), "streak": 0, "pending": {},
                }
        for a, b, direction in batch_update.moved:
            ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
            if ra is not None:
                self.rows[b] = ra
            if direction == MoveDirectionality.SWAP and rb is not None:
                self.rows[a] = rb

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        idx = sorted(self.rows)
        for i in idx:  # credit every sampled token known by now with the logits it was drawn from
            r = self.rows[i]
            out, pending = r["out"], r["pending"]
            # async scheduling appends -1 for a token still being sampled: credit it a step later
            while r["seen"] < len(out) and out[r["seen"]] != -1:
                argmax, lp = pending.pop(r["seen"], (None, -math.inf))
                r["streak"] = r["streak"] + 1 if out[r["seen"]] == argmax and lp > r["threshold"] else 0
                r["seen"] += 1
        rows = torch.tensor(idx, device=logits.device)
        temps = torch.tensor([self.rows[i]["temperature"] for i in idx], device=logits.device)
        logp = (logits[rows] / temps[:, None]).log_softmax(dim=-1, dtype=torch.float32)  # [n, V]
        best_lp, best = logp.max(dim=-1)
        for i, tok, lp in zip(idx, best.tolist(), best_lp.tolist()):
            r = self.rows[i]
            r["pending"][len(r["out"])] = (tok, lp)  # these logits draw output token number len(out)
            if r["streak"] >= r["n"]:
                logits[i] = -math.inf
                logits[i, r["stop"]] = 0.0
        return logits


def register() -> None:
    """Add ``M1ForCausalLM`` to vLLM's model registry (the ``vllm.general_plugins`` entry point)."""
    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, M1VLLMForCausalLM)
