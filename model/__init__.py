"""The M1 hybrid lightning-attention MoE model (issue #2).

Public API: ``M1Config``, ``M1ForCausalLM``; submodules ``model.generation`` (rollout engine),
``model.logprobs`` (training-path token log-probabilities), ``model.tokenizer``, ``model.flops``.
"""

from model.config import M1Config
from model.modeling import M1Cache, M1ForCausalLM, M1Output

__all__ = ["M1Cache", "M1Config", "M1ForCausalLM", "M1Output"]
