"""Training-path token log-probabilities, for the RL loss (CISPO's log pi(o_t), report Eq. 4).

``token_logprobs(model, input_ids, attention_mask)`` works for ``M1ForCausalLM`` and for any Hugging
Face causal LM. It takes the final hidden states and the LM head weight and computes log-softmax in
fp32 through ``kernels.fused_logprobs`` (the report's FP32 LM head, section 3.3), without
materialising a [B, T, V] logits tensor on the fused path.
"""

from __future__ import annotations

import torch

import kernels
from model.modeling import M1ForCausalLM


def hf_base_model(model):
    """The decoder under a Hugging Face ``*ForCausalLM`` (``model.model`` for Llama, Qwen2, MiniMax)."""
    return getattr(model, model.base_model_prefix)


def padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """RoPE positions that count real tokens only, so a left-padded row matches its unpadded run."""
    return (attention_mask.long().cumsum(1) - 1).clamp(min=0)


def final_hidden(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Hidden states after the final norm, [B, T, d]."""
    if isinstance(model, M1ForCausalLM):
        return model.model(input_ids, attention_mask)[0]
    kwargs = {}
    if attention_mask is not None:
        kwargs = dict(attention_mask=attention_mask, position_ids=padded_positions(attention_mask))
    return hf_base_model(model)(input_ids=input_ids, use_cache=False, **kwargs).last_hidden_state


def head_logprobs(model, hidden: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(target) and the entropy under the LM head of final hidden states: hidden [N, d], targets
    [N] -> two [N] fp32. ``M1ForCausalLM`` with ``lm_head_fp32=False`` takes the logits in the model's
    dtype (what a bf16 head computes); every other case goes through the fused fp32 kernel."""
    if isinstance(model, M1ForCausalLM) and not model.config.lm_head_fp32:
        logp_all = torch.log_softmax(model.lm_head(hidden).float(), dim=-1)  # [N, V]
        return logp_all.gather(-1, targets[:, None]).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)
    backend = model.config.kernel_backend if isinstance(model, M1ForCausalLM) else "auto"
    backend = "reference" if backend == "recurrent" else backend
    return kernels.fused_logprobs(hidden, model.get_output_embeddings().weight, targets, backend=backend)


def token_logprobs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(input_ids[:, t] | input_ids[:, :t]) and the entropy of that distribution, both [B, T] fp32.

    Position 0 (no context), padded positions and the first real token of a left-padded row are 0.
    Differentiable w.r.t. the model's parameters. The head as ``head_logprobs``.
    """
    B, T = input_ids.shape
    hidden = final_hidden(model, input_ids, attention_mask)[:, :-1]  # [B, T-1, d]
    lp, ent = head_logprobs(model, hidden.reshape(-1, hidden.shape[-1]), input_ids[:, 1:].reshape(-1))
    lp, ent = lp.view(B, T - 1), ent.view(B, T - 1)
    zero = lp.new_zeros(B, 1)
    lp, ent = torch.cat((zero, lp), dim=1), torch.cat((zero, ent), dim=1)  # [B, T]
    if attention_mask is not None:
        # a token is scored only when it and its predecessor are real (left padding: the first real
        # token has no context, like position 0)
        m = attention_mask.to(lp.dtype)
        valid = torch.cat((torch.zeros_like(m[:, :1]), m[:, 1:] * m[:, :-1]), dim=1)
        lp, ent = lp * valid, ent * valid
    return lp, ent


def response_logprobs(model, prompts: list[list[int]], responses: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(r_t | prompt, r_<t) and its entropy for every response token: two ``[n, R]`` fp32 grids
    (R the longest response, 0 past each response's end). Differentiable w.r.t. the parameters.

    RL scores G responses to each prompt, and a prompt is most of a short reply's tokens. On
    ``M1ForCausalLM`` each distinct prompt therefore runs once, left-padded, and its cache (the
    lightning layers' states, the softmax layers' keys and values) is repeated for each response that
    follows it; the responses then run on their copy. The backward pass carries every response's
    gradient back through its copy into the one prompt computation, so values and gradients are those
    of ``token_logprobs`` on the whole sequences, up to float rounding. Other models run the whole
    sequences (right-padded). Either way the LM head runs on response positions only.
    """
    n = len(prompts)
    if n != len(responses) or any(not p for p in prompts):
        raise ValueError(f"response_logprobs: {n} prompts, each non-empty, and as many responses (got {len(responses)})")
    dev = next(model.parameters()).device
    R = max((len(r) for r in responses), default=0)
    resp = torch.zeros(n, max(R, 1), dtype=torch.long, device=dev)
    for i, r in enumerate(responses):
        resp[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    scored = torch.arange(resp.shape[1], device=dev)[None, :] < torch.tensor([len(r) for r in responses], device=dev)[:, None]
    if isinstance(model, M1ForCausalLM):
        hidden = _shared_prefix_hidden(model, prompts, resp, scored)
    else:
        hidden = _whole_sequence_hidden(model, prompts, responses, resp.shape[1])
    flat_lp, flat_ent = head_logprobs(model, hidden[scored], resp[scored])
    lp = torch.zeros(n, resp.shape[1], device=dev, dtype=flat_lp.dtype).masked_scatter(scored, flat_lp)
    ent = torch.zeros_like(lp).masked_scatter(scored, flat_ent)
    return lp[:, :R], ent[:, :R]


def _shared_prefix_hidden(model: M1ForCausalLM, prompts: list[list[int]], resp: torch.Tensor,
                          scored: torch.Tensor) -> torch.Tensor:
    """[n, R, d]: the final hidden state that predicts each response token (the prompt's last one for
    the first token), each distinct prompt run once and its cache shared."""
    dev = resp.device
    index: dict[tuple[int, ...], int] = {}
    inverse = torch.tensor([index.setdefault(tuple(p), len(index)) for p in prompts], device=dev)
    distinct = list(index)
    P = max(len(p) for p in distinct)
    ids = torch.zeros(len(distinct), P, dtype=torch.long, device=dev)
    mask = torch.zeros(len(distinct), P, dtype=torch.long, device=dev)
    for j, p in enumerate(distinct):  # left padding: every prompt ends at position P-1
        ids[j, P - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[j, P - len(p):] = 1
    hidden, cache, _ = model.model(ids, None if bool(mask.all()) else mask, None, True)
    first = hidden[:, -1:][inverse]  # [n, 1, d]
    if resp.shape[1] == 1:
        return first
    inputs, real = resp[:, :-1], scored[:, :-1]  # the last response token is only a target
    rest, _, _ = model.model(inputs, None if bool(real.all()) else real.long(), cache.select(inverse), False)
    return torch.cat((first, rest), dim=1)


def _whole_sequence_hidden(model, prompts: list[list[int]], responses: list[list[int]], R: int) -> torch.Tensor:
    """[n, R, d] as ``_shared_prefix_hidden``, from the whole sequences right-padded (any causal LM)."""
    dev = next(model.parameters()).device
    W = max(len(p) + len(r) for p, r in zip(prompts, responses))
    ids = torch.zeros(len(prompts), W, dtype=torch.long, device=dev)
    attn = torch.zeros(len(prompts), W, dtype=torch.long, device=dev)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r, dtype=torch.long)
        attn[i, : len(p) + len(r)] = 1
    hidden = final_hidden(model, ids, attn)  # [n, W, d]
    # response token t of row i is predicted at position len(p_i) - 1 + t (clamped past its end)
    at = torch.tensor([len(p) - 1 for p in prompts], device=dev)[:, None] + torch.arange(R, device=dev)[None, :]
    return hidden.gather(1, at.clamp(max=W - 1)[..., None].expand(-1, -1, hidden.shape[-1]))
