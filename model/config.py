"""The architecture of the M1 hybrid model in one dataclass (report section 2; MiniMax-01 section 2).

``python -m model`` prints the parameter counts of the presets.

Field names mirror transformers' ``MiniMaxConfig`` so a Hugging Face ``config.json`` maps one to one
(``rope_parameters.rope_theta`` is ``rope_theta`` here; inference-only switches such as
``use_cache`` and ``sliding_window`` are left out). The original MiniMax names (``attn_type_list``,
``layernorm_*_alpha``/``beta``) are read too.
Fields transformers has no name for: ``rotary_dim`` (the real M1 rotates 64 of 128 dims; transformers
rotates the whole head), ``lm_head_fp32`` (report section 3.3) and ``kernel_backend``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

LINEAR, FULL = "linear_attention", "full_attention"
KERNEL_BACKENDS = ("auto", "triton", "reference", "recurrent")


def hybrid_layer_types(num_layers: int, period: int = 8) -> list[str]:
    """The report's 7:1 pattern: seven lightning layers, then one softmax layer, repeating."""
    return [FULL if (i + 1) % period == 0 else LINEAR for i in range(num_layers)]


@dataclass
class M1Config:
    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256  # per expert
    num_hidden_layers: int = 8
    num_attention_heads: int = 4
    num_key_value_heads: int = 2  # softmax layers only; lightning layers have one k, v per head
    head_dim: int = 32
    hidden_act: str = "silu"
    max_position_embeddings: int = 131072
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-5
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    tie_word_embeddings: bool = False
    num_experts_per_tok: int = 2
    num_local_experts: int = 4
    router_aux_loss_coef: float = 0.001
    router_jitter_noise: float = 0.0
    rope_theta: float = 10_000_000.0
    rotary_dim: int | None = None  # None = head_dim (what transformers can express)
    layer_types: list[str] = field(default_factory=list)  # empty = the 7:1 pattern
    block_size: int = 64  # lightning block length of the chunked path (transformers' HF path: 256)
    full_attn_alpha_factor: float = 1.0
    full_attn_beta_factor: float = 1.0
    linear_attn_alpha_factor: float = 1.0
    linear_attn_beta_factor: float = 1.0
    mlp_alpha_factor: float = 1.0
    mlp_beta_factor: float = 1.0
    lm_head_fp32: bool = True
    kernel_backend: str = "auto"

    def __post_init__(self) -> None:
        if not self.layer_types:
            self.layer_types = hybrid_layer_types(self.num_hidden_layers)
        if self.rotary_dim is None:
            self.rotary_dim = self.head_dim
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ValueError(f"M1Config.{name} = {getattr(self, name)!r}: {why}")

        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                     "num_attention_heads", "num_key_value_heads", "head_dim", "num_local_experts",
                     "num_experts_per_tok", "block_size"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                 "must be a positive integer")
        need(self.num_attention_heads % self.num_key_value_heads == 0, "num_key_value_heads",
             f"must divide num_attention_heads = {self.num_attention_heads} (grouped-query attention)")
        need(self.num_experts_per_tok <= self.num_local_experts, "num_experts_per_tok",
             f"cannot exceed num_local_experts = {self.num_local_experts}")
        need(len(self.layer_types) == self.num_hidden_layers, "layer_types",
             f"needs one entry per layer (num_hidden_layers = {self.num_hidden_layers})")
        need(all(t in (LINEAR, FULL) for t in self.layer_types), "layer_types",
             f"entries must be {LINEAR!r} or {FULL!r}")
        need(0 < self.rotary_dim <= self.head_dim and self.rotary_dim % 2 == 0, "rotary_dim",
             f"must be even and in (0, head_dim = {self.head_dim}]")
        need(self.hidden_act == "silu", "hidden_act", "only 'silu' (MiniMax) is implemented")
        need(self.kernel_backend in KERNEL_BACKENDS, "kernel_backend", f"must be one of {KERNEL_BACKENDS}")
        need(self.rms_norm_eps > 0, "rms_norm_eps", "must be positive")
        need(self.rope_theta > 0, "rope_theta", "must be positive")
        need(self.router_jitter_noise >= 0, "router_jitter_noise", "must be >= 0")

    @classmethod
    def preset(cls, name: str, **overrides) -> M1Config:
        """``tiny`` (CPU tests, a few M parameters), ``small`` (one H200), ``minimax-m1`` (meta device only)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_hf_dict(self) -> dict:
        """The transformers ``config.json`` (``model_type: minimax``), plus our extra fields.

        transformers ignores ``rotary_dim``, ``lm_head_fp32`` and ``kernel_backend``; vLLM's
        ``MiniMaxText01`` reads ``rotary_dim`` (the original MiniMax checkpoints carry it too).
        """
        d = self.to_dict()
        d["rope_parameters"] = {"rope_type": "default", "rope_theta": d.pop("rope_theta")}
        d.update(model_type="minimax", architectures=["MiniMaxForCausalLM"], use_cache=True,
                 attention_dropout=0.0, output_router_logits=False, sliding_window=None)
        # the original MiniMax names too: vLLM's MiniMaxText01 reads these (postnorm selects the
        # residual-after-norm form that transformers always uses)
        d.update({theirs: d[ours] for ours, theirs in _ORIGINAL_NAMES.items()})
        d.update(attn_type_list=[int(t == FULL) for t in self.layer_types], postnorm=True)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> M1Config:
        """Build from our dict or a transformers MiniMax ``config.json`` (unknown keys are ignored)."""
        d = dict(d)
        # the original MiniMax-Text-01 / M1 config.json names (also read by vLLM)
        if "attn_type_list" in d and not d.get("layer_types"):
            d["layer_types"] = [FULL if t else LINEAR for t in d["attn_type_list"]]
        for ours, theirs in _ORIGINAL_NAMES.items():
            if theirs in d:
                d.setdefault(ours, d[theirs])
        rope = d.pop("rope_parameters", None) or {}
        if "rope_theta" in rope:
            d.setdefault("rope_theta", rope["rope_theta"])
        if d.get("head_dim") is None and "hidden_size" in d and "num_attention_heads" in d:
            d["head_dim"] = d["hidden_size"] // d["num_attention_heads"]
        if isinstance(d.get("eos_token_id"), list):
            d["eos_token_id"] = d["eos_token_id"][0]
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def from_json(cls, path: str | Path) -> M1Config:
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def num_linear_layers(self) -> int:
        return sum(t == LINEAR for t in self.layer_types)

    @property
    def num_full_layers(self) -> int:
        return sum(t == FULL for t in self.layer_types)

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts from the shapes alone (works for the 456B preset without allocating).

        ``total``: every parameter; ``active``: those one token uses (top-k of the experts);
        ``active_non_embedding``: ``active`` without the input embedding and the LM head, the count
        the report's 45.9B matches.
        """
        d, H, Dh, Hkv = self.hidden_size, self.num_attention_heads, self.head_dim, self.num_key_value_heads
        lightning = d * 3 * H * Dh + d * H * Dh + H * Dh * d + H * Dh  # qkv, gate, out, norm
        softmax = d * H * Dh + 2 * d * Hkv * Dh + H * Dh * d
        expert = 3 * d * self.intermediate_size
        per_layer_common = d * self.num_local_experts + 2 * d  # router, two norms
        layers_wo_experts = (self.num_linear_layers * lightning + self.num_full_layers * softmax
                             + self.num_hidden_layers * per_layer_common)
        embed = self.vocab_size * d
        head = 0 if self.tie_word_embeddings else self.vocab_size * d
        total_experts = self.num_hidden_layers * self.num_local_experts * expert
        active_experts = self.num_hidden_layers * self.num_experts_per_tok * expert
        return {
            "total": embed + head + d + layers_wo_experts + total_experts,
            "active": embed + head + d + layers_wo_experts + active_experts,
            "active_non_embedding": d + layers_wo_experts + active_experts,
        }


_ORIGINAL_NAMES = {
    "full_attn_alpha_factor": "layernorm_full_attention_alpha",
    "full_attn_beta_factor": "layernorm_full_attention_beta",
    "linear_attn_alpha_factor": "layernorm_linear_attention_alpha",
    "linear_attn_beta_factor": "layernorm_linear_attention_beta",
    "mlp_alpha_factor": "layernorm_mlp_alpha",
    "mlp_beta_factor": "layernorm_mlp_beta",
}

PRESETS: dict[str, dict] = {
    # CPU: 8 layers (7 lightning + 1 softmax), 4 experts, 4.0M parameters (2.5M active); a forward + backward
    # on [4, 128] tokens runs in a fraction of a second on one core. Vocab = the project tokenizer's.
    "tiny": dict(
        vocab_size=1024, hidden_size=128, intermediate_size=256, num_hidden_layers=8,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, num_local_experts=4,
        num_experts_per_tok=2, block_size=64, rope_theta=10_000_000.0,
        full_attn_alpha_factor=2.0, linear_attn_alpha_factor=2.0, mlp_alpha_factor=2.0,  # (2*8)^(1/4)
    ),
    # One H200: 3.7B parameters (1.25B active); fp32 weights, gradients and AdamW states take 59 GB.
    "small": dict(
        vocab_size=32768, hidden_size=2048, intermediate_size=4096, num_hidden_layers=16,
        num_attention_heads=16, num_key_value_heads=4, head_dim=128, num_local_experts=8,
        num_experts_per_tok=2, block_size=256, rope_theta=10_000_000.0,
        full_attn_alpha_factor=(2 * 16) ** 0.25, linear_attn_alpha_factor=(2 * 16) ** 0.25,
        mlp_alpha_factor=(2 * 16) ** 0.25,
    ),
    # The real MiniMax-M1 / MiniMax-Text-01 shape (report section 2): 456B total, 45.9B active.
    "minimax-m1": dict(
        vocab_size=200064, hidden_size=6144, intermediate_size=9216, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, head_dim=128, num_local_experts=32,
        num_experts_per_tok=2, block_size=256, rope_theta=10_000_000.0, rotary_dim=64,
        max_position_embeddings=10_240_000, rms_norm_eps=1e-5,
        full_attn_alpha_factor=(2 * 80) ** 0.25, linear_attn_alpha_factor=(2 * 80) ** 0.25,
        mlp_alpha_factor=(2 * 80) ** 0.25,
    ),
}
