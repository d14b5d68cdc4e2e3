"""Rollout generation in PyTorch: batched prefill, then incremental decoding.

``TorchEngine(model).generate(prompts, SamplingParams(...))`` works for ``M1ForCausalLM`` (recurrent
lightning state + softmax KV cache, ``M1Cache``) and for any Hugging Face causal LM (its
``past_key_values`` cache). Prompts of different lengths are left-padded: lightning layers zero the
q, k, v of padded positions (their state stays exactly zero), softmax layers mask padded keys, and
RoPE positions count real tokens only, so each row decodes as if it were alone.

Sampling: logits are computed in fp32 from the final hidden state (the report's FP32 LM head,
section 3.3), divided by the temperature, then truncated by top-k and top-p and renormalised.
The log-probability returned for each token is that of the temperature-scaled distribution
*before* top-k / top-p truncation: the full softmax that the trainer's ``token_logprobs``
reproduces (at temperature 1), so the importance ratio of CISPO compares like with like.
Temperature 0 is greedy decoding, with the log-probability of the untempered distribution.

Decoding modes (``TorchEngine(model, decode=...)``): ``eager`` runs the model's own forward one
token at a time, dropping finished rows from the cache. ``static`` (``M1ForCausalLM`` only) decodes
over preallocated buffers (``StaticDecoder``: the lightning states, a softmax KV cache sized for the
whole reply, a dense top-k MoE), so a step has fixed shapes and no host synchronisation; ``graph`` is
``static`` with the step captured once as a CUDA graph and replayed (the decode step of a small
model is launch overhead, not arithmetic). ``auto``: ``graph`` for M1 on a GPU, else ``eager``.

Finish reasons: ``eos`` (a stop token was sampled; it is kept in the output), ``repetition`` (the
report's early truncation, section 3.2: ``repetition_n`` consecutive tokens each with probability
above ``repetition_p``; the N-th such token is the last one kept) and ``length``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.config import LINEAR
from model.logprobs import hf_base_model, padded_positions
from model.modeling import M1Cache, M1ForCausalLM, SparseMoE, apply_rope

DECODE_MODES = ("auto", "eager", "static", "graph")


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    stop_token_ids: tuple[int, ...] = ()
    repetition_n: int = 3000  # early truncation: N consecutive tokens ...
    repetition_p: float = 0.99  # ... each with probability above p

    def __post_init__(self) -> None:
        self.stop_token_ids = tuple(int(t) for t in self.stop_token_ids)
        checks = {
            "max_new_tokens": self.max_new_tokens >= 1,
            "temperature": self.temperature >= 0,
            "top_p": 0 < self.top_p <= 1,
            "top_k": self.top_k >= 0,
            "repetition_n": self.repetition_n >= 1,
            "repetition_p": 0 <= self.repetition_p <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"SamplingParams.{name} = {getattr(self, name)!r} is out of range")


@dataclass
class GenerationOutput:
    tokens: list[list[int]]  # generated ids only (stop token included when it fired)
    logprobs: list[list[float]]  # inference-side log-prob of each sampled token
    finish_reasons: list[str]  # "eos" | "length" | "repetition"


def sample(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None = None):
    """logits [B, V] -> (token [B], log-prob [B] of the tempered distribution before truncation)."""
    if params.temperature == 0:
        logp = torch.log_softmax(logits.float(), dim=-1)
        tok = logp.argmax(-1)
        return tok, logp.gather(-1, tok[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits.float() / params.temperature, dim=-1)  # [B, V]
    probs = logp.exp()
    if params.top_k > 0:
        kth = torch.topk(probs, min(params.top_k, probs.shape[-1]), dim=-1).values[:, -1:]
        probs = torch.where(probs >= kth, probs, 0.0)
    if params.top_p < 1.0:
        probs = nucleus(probs, params.top_p)
    tok = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return tok, logp.gather(-1, tok[:, None]).squeeze(-1)


def nucleus_by_sort(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs [B, V] with every token outside the top-p nucleus set to 0: the smallest prefix of the
    descending order whose mass reaches top_p of the row's mass (over the top-k survivors)."""
    p_sorted, order = torch.sort(probs, dim=-1, descending=True)
    mass_before = p_sorted.cumsum(-1) - p_sorted
    p_sorted = torch.where(mass_before < top_p * p_sorted.sum(-1, keepdim=True), p_sorted, 0.0)
    return torch.zeros_like(probs).scatter(-1, order, p_sorted)


#: relative margin around top_p x the row's mass inside which ``nucleus`` defers to the full sort: the
#: sum in sorted order and in vocabulary order differ by at most V x 2^-24 of the mass (6.1e-5 at V 1024)
NUCLEUS_MARGIN = 1e-4


def nucleus(probs: torch.Tensor, top_p: float, k: int = 64) -> torch.Tensor:
    """``nucleus_by_sort``'s result, the same floats, from the ``k`` largest probabilities of each row.

    Sorting the whole vocabulary was 13% of a decode step at top-p 0.95 (64 rows, V 1024, one thread).
    A trained policy's nucleus is a few tokens: the prefix sums of the top k are those of the full sort
    (to the bit on a CPU, whose cumsum adds in order; within rounding on a GPU), so a row's cut is the
    same wherever it is clear of the threshold by ``NUCLEUS_MARGIN`` (the total is summed in another
    order) and falls inside the top k with no tie across it; the kept values are the row's own. The
    other rows take the full sort."""
    V = probs.shape[-1]
    if k >= V:
        return nucleus_by_sort(probs, top_p)
    vals, idx = torch.topk(probs, k + 1, dim=-1)  # one past k: a tie across the cut is visible
    mass_before = vals.cumsum(-1) - vals
    total = probs.sum(-1, keepdim=True)
    lo, hi = top_p * total * (1 - NUCLEUS_MARGIN), top_p * total * (1 + NUCLEUS_MARGIN)
    keep = mass_before < lo
    clear = keep | (mass_before >= hi)
    cut = keep.sum(-1, keepdim=True)  # kept tokens of each row (none only in a row of zeros)
    last, after = vals.gather(-1, (cut - 1).clamp(min=0)), vals.gather(-1, cut.clamp(max=k))
    unclear = ~(clear.all(-1) & (cut[:, 0] > 0) & (cut[:, 0] < k + 1) & (last != after)[:, 0])
    out = torch.zeros_like(probs).scatter(-1, idx, torch.where(keep, vals, 0.0))
    if bool(unclear.any()):
        rows = unclear.nonzero()[:, 0]
        out[rows] = nucleus_by_sort(probs[rows], top_p)
    return out


def dense_moe(moe: SparseMoE, x: torch.Tensor) -> torch.Tensor:
    """``SparseMoE.forward`` without data-dependent shapes: every expert runs on every row and
    unselected rows get weight 0, accumulated in the same expert order (same sums, up to GEMM
    rounding). x [N, d] -> [N, d]."""
    probs = torch.softmax(moe.router_logits(x), dim=-1)  # [N, E]
    top_w, top_i = torch.topk(probs, moe.cfg.num_experts_per_tok, dim=-1)
    weights = torch.zeros_like(probs).scatter(1, top_i, top_w / top_w.sum(-1, keepdim=True))  # [N, E]
    out = torch.zeros_like(x)
    for e, expert in enumerate(moe.experts):
        out += (expert(x) * weights[:, e, None]).to(out.dtype)
    return out


class StaticDecoder:
    """One-token decode steps of ``M1ForCausalLM`` for a fixed batch over preallocated buffers.

    Built from the prefill's ``M1Cache``: lightning states [B, H, Dk, Dv] fp32 are copied, each
    softmax layer's keys and values go into [B, Hkv, S + max_new_tokens, D] buffers, and the write
    position, RoPE positions and key mask live on the device, so a step (``step(tok) -> logits
    [B, V]`` fp32) changes no shape and reads nothing back. With ``graph`` (CUDA only) the step is
    captured once as a CUDA graph and replayed. Finished rows keep decoding; the caller ignores them.
    """

    def __init__(self, model: M1ForCausalLM, cache: M1Cache, max_new_tokens: int, *, graph: bool) -> None:
        self.model, cfg = model, model.config
        B, S = cache.key_mask.shape
        width = S + max_new_tokens
        self.kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.states: dict[int, torch.Tensor] = {}
        for i, (layer, past) in enumerate(zip(model.model.layers, cache.layers)):
            if layer.kind == LINEAR:
                self.states[i] = past.clone()
            else:
                k, v = past  # [B, Hkv, S, D]
                self.kv[i] = tuple(t.new_zeros(B, t.shape[1], width, t.shape[3]) for t in (k, v))
                self.kv[i][0][:, :, :S], self.kv[i][1][:, :, :S] = k, v
        dev = cache.key_mask.device
        self.key_mask = torch.zeros(B, width, dtype=torch.bool, device=dev)
        self.key_mask[:, :S] = cache.key_mask
        self.pos = cache.next_pos.clone()  # [B] RoPE position of the token being fed
        self.t = torch.full((1,), S, dtype=torch.long, device=dev)  # its column in the KV buffers
        self.tok = torch.zeros(B, dtype=torch.long, device=dev)
        # modeling.rope_cos_sin's frequencies, made once: the step may not copy from the host
        rd = cfg.rotary_dim
        self.inv_freq = (1.0 / (cfg.rope_theta ** (torch.arange(0, rd, 2, dtype=torch.float) / rd))).to(dev)
        self.logits: torch.Tensor | None = None
        self.graph = None
        if graph:
            self._capture()

    def _mutable(self) -> list[torch.Tensor]:
        return [*self.states.values(), *(t for kv in self.kv.values() for t in kv), self.key_mask, self.pos, self.t]

    def _capture(self) -> None:
        saved = [t.clone() for t in self._mutable()]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: kernel compilation and library handles stay out of the graph
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        for t, snap in zip(self._mutable(), saved):
            t.copy_(snap)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._step()

    def step(self, tok: torch.Tensor) -> torch.Tensor:
        """Feed tok [B]; returns the next token's fp32 logits [B, V] (a buffer the next step overwrites)."""
        self.tok.copy_(tok)
        if self.graph is not None:
            self.graph.replay()
        else:
            self._step()
        return self.logits

    def _step(self) -> None:
        m, cfg = self.model.model, self.model.config
        x = m.embed_tokens(self.tok)[:, None]  # [B, 1, d]
        self.key_mask.index_fill_(1, self.t, True)
        freqs = self.pos[:, None, None].float() * self.inv_freq  # [B, 1, rd/2]
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # [B, 1, 1, rd]
        rope = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        for i, layer in enumerate(m.layers):  # DecoderLayer.forward with the static attention and MoE
            h = layer.input_layernorm(x)
            if layer.kind == LINEAR:
                a, state = layer.self_attn(h, None, self.states[i], True)
                self.states[i].copy_(state)
            else:
                a = self._softmax_attention(layer.self_attn, h, rope, i)
            x = layer.alpha * h + layer.beta * a
            h = layer.post_attention_layernorm(x)
            x = layer.mlp_alpha * h + layer.mlp_beta * dense_moe(layer.block_sparse_moe, h[:, 0])[:, None]
        self.logits = self.model.head_logits(m.norm(x)[:, 0]).float()
        self.t += 1
        self.pos += 1

    def _softmax_attention(self, attn, h: torch.Tensor, rope, i: int) -> torch.Tensor:
        B, D = h.shape[0], self.model.config.head_dim
        q = attn.q_proj(h).view(B, 1, -1, D).transpose(1, 2)  # [B, H, 1, D]
        k = attn.k_proj(h).view(B, 1, -1, D).transpose(1, 2)  # [B, Hkv, 1, D]
        v = attn.v_proj(h).view(B, 1, -1, D).transpose(1, 2)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        keys, values = self.kv[i]
        keys.index_copy_(2, self.t, k)
        values.index_copy_(2, self.t, v)
        o = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=self.key_mask[:, None, None, :], scale=D**-0.5, enable_gqa=True
        )  # [B, H, 1, D]
        return attn.o_proj(o.transpose(1, 2).reshape(B, 1, -1))


class TorchEngine:
    """Batched generation with a cache, for ``M1ForCausalLM`` or a Hugging Face causal LM."""

    workers = 1  # processes a call runs on (``model.sharded.ShardedEngine``: more)

    def __init__(self, model, *, pad_token_id: int = 0, decode: str = "auto") -> None:
        if decode not in DECODE_MODES:
            raise ValueError(f"decode={decode!r}: expected one of {DECODE_MODES}")
        self.model = model
        self.pad_token_id = pad_token_id
        self.native = isinstance(model, M1ForCausalLM)
        if decode in ("static", "graph") and not self.native:
            raise ValueError(f"decode={decode!r} needs M1ForCausalLM, got {type(model).__name__}")
        self.decode = decode
        if not self.native:
            params = inspect.signature(hf_base_model(model).forward).parameters
            # transformers 5.x renames past_key_values to cache (the GPU image has an older 5.x)
            self._cache_kw = "cache" if "cache" in params else "past_key_values"

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Last position's fp32 logits [B, V] (the report's FP32 LM head)."""
        if self.native:
            return self.model.head_logits(hidden[:, -1]).float()
        return F.linear(hidden[:, -1].float(), self.model.get_output_embeddings().weight.float())

    def _forward(self, ids, new_mask, full_mask, cache):
        """Run new tokens ids [B, T] through the model; returns (logits [B, V], cache)."""
        if self.native:
            out = self.model.model(ids, None if bool(new_mask.all()) else new_mask, cache, True)
            return self._head(out[0]), out[1]
        pos = padded_positions(full_mask)[:, -ids.shape[1]:]
        out = hf_base_model(self.model)(
            input_ids=ids, attention_mask=full_mask, position_ids=pos, use_cache=True,
            **{self._cache_kw: cache},
        )
        new_cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        return self._head(out.last_hidden_state), new_cache

    def _prefill(self, ids, mask):
        """Prefill each distinct prompt once, then give every row its copy of the logits and cache.

        RL samples G replies per prompt, pass@k and the evaluations k: prefill (whole prompts, most of
        a short reply's cost) would otherwise run G or k times on equal rows. Rows are equal when
        their padded ids and masks are."""
        rows = torch.cat((ids, mask), dim=1)
        uniq, inverse = torch.unique(rows, dim=0, return_inverse=True)
        if uniq.shape[0] == rows.shape[0]:
            return self._forward(ids, mask, mask, None)
        first = torch.empty(uniq.shape[0], dtype=torch.long, device=ids.device)
        first.scatter_(0, inverse, torch.arange(rows.shape[0], device=ids.device))
        logits, cache = self._forward(ids[first], mask[first], mask[first], None)
        expanded = self._select(cache, inverse)
        if expanded is None:
            return self._forward(ids, mask, mask, None)
        return logits[inverse], expanded

    def _select(self, cache, idx: torch.Tensor):
        """Rows ``idx`` of the cache (drops finished rows; repeats copy a row); None where the cache type
        cannot do that."""
        if self.native:
            return cache.select(idx)
        if hasattr(cache, "batch_select_indices"):
            cache.batch_select_indices(idx)
            return cache
        return None

    @torch.no_grad()
    def generate(
        self, prompts: list[list[int]], params: SamplingParams, generator: torch.Generator | None = None
    ) -> GenerationOutput:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        dev = next(self.model.parameters()).device
        B, L = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((B, L), self.pad_token_id, dtype=torch.long, device=dev)
        mask = torch.zeros(B, L, dtype=torch.long, device=dev)
        for i, p in enumerate(prompts):  # left padding: every row's last token is at position L-1
            ids[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
            mask[i, L - len(p):] = 1
        was_training = self.model.training
        self.model.eval()
        try:
            return self._decode(ids, mask, params, generator)
        finally:
            self.model.train(was_training)

    def _decode(self, ids, mask, params, generator) -> GenerationOutput:
        B = ids.shape[0]
        tokens: list[list[int]] = [[] for _ in range(B)]
        logprobs: list[list[float]] = [[] for _ in range(B)]
        reasons: list[str | None] = [None] * B
        streak = [0] * B  # consecutive tokens with probability above repetition_p
        stop = set(params.stop_token_ids)
        threshold = torch.tensor(params.repetition_p).log().item() if params.repetition_p > 0 else -float("inf")
        logits, cache = self._prefill(ids, mask)
        mode = self.decode
        if mode == "auto":
            mode = "graph" if self.native and ids.is_cuda else "eager"
        static = None
        if mode != "eager" and params.max_new_tokens > 1:
            static = StaticDecoder(self.model, cache, params.max_new_tokens, graph=mode == "graph")
        rows = list(range(B))  # original index of each row still in the batch
        ones = mask.new_ones(B, 1)
        for _ in range(params.max_new_tokens):
            tok, lp = sample(logits, params, generator)
            tok_l, lp_l = tok.tolist(), lp.tolist()
            keep = []
            for j, i in enumerate(rows):
                if reasons[i] is not None:  # finished, kept only where the cache cannot drop rows
                    continue
                tokens[i].append(tok_l[j])
                logprobs[i].append(lp_l[j])
                streak[i] = streak[i] + 1 if lp_l[j] > threshold else 0
                if tok_l[j] in stop:
                    reasons[i] = "eos"
                elif streak[i] >= params.repetition_n:
                    reasons[i] = "repetition"
                elif len(tokens[i]) >= params.max_new_tokens:
                    reasons[i] = "length"
                else:
                    keep.append(j)
            if not keep:
                break
            if static is not None:
                logits = static.step(tok)
                continue
            if len(keep) < len(rows):
                idx = torch.tensor(keep, device=tok.device)
                selected = self._select(cache, idx)
                if selected is not None:
                    cache, tok, mask = selected, tok[idx], mask[idx]
                    rows = [rows[j] for j in keep]
            mask = torch.cat((mask, ones[: mask.shape[0]]), dim=1)
            logits, cache = self._forward(tok[:, None], ones[: mask.shape[0]], mask, cache)
        return GenerationOutput(tokens, logprobs, [r or "length" for r in reasons])
