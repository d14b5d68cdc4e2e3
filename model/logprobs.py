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


def token_logprobs(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(input_ids[:, t] | input_ids[:, :t]) and the entropy of that distribution, both [B, T] fp32.

    Position 0 (no context), padded positions and the first real token of a left-padded row are 0.
    Differentiable w.r.t. the model's parameters.
    ``M1ForCausalLM`` with ``lm_head_fp32=False`` takes the logits in the model's dtype (what a bf16
    head computes); every other case goes through the fused fp32 kernel.
    """
    B, T = input_ids.shape
    hidden = final_hidden(model, input_ids, attention_mask)[:, :-1]  # [B, T-1, d]
    targets = input_ids[:, 1:]  # [B, T-1]
    if isinstance(model, M1ForCausalLM) and not model.config.lm_head_fp32:
        logp_all = torch.log_softmax(model.lm_head(hidden).float(), dim=-1)  # [B, T-1, V]
        lp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
        ent = -(logp_all.exp() * logp_all).sum(-1)
    else:
        backend = model.config.kernel_backend if isinstance(model, M1ForCausalLM) else "auto"
        backend = "reference" if backend == "recurrent" else backend
        weight = model.get_output_embeddings().weight  # [V, d]
        lp, ent = kernels.fused_logprobs(
            hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1), backend=backend
        )
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
