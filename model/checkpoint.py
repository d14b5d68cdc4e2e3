"""The one adapter between ``M1ForCausalLM`` and the Hugging Face checkpoint format.

On disk a MiniMax checkpoint is ``config.json`` (``model_type: minimax``) plus safetensors with the
original MiniMax weight names (``block_sparse_moe.experts.{e}.w1/w2/w3``), which is what
transformers' ``MiniMaxForCausalLM.save_pretrained`` writes and what vLLM's ``MiniMaxText01`` reads.
Our module names are those names, so saving is the state dict. Loading also accepts the packed
in-memory layout of transformers (``mlp.experts.gate_up_proj`` / ``down_proj``) and ignores the
decay buffers transformers stores (we recompute them from the config).

``save_vllm_export`` writes the variant vLLM 0.23 loads: the same names without those decay buffers
(vLLM looks every checkpoint tensor up among its own parameters and stops with
``KeyError('layers.0.self_attn.diagonal_decay')``), the LM head optionally kept in fp32. The names
vLLM 0.23.0's ``MiniMaxText01ForCausalLM.load_weights`` accepts are ``VLLM_023_WEIGHTS`` below,
checked against the export by ``tests/test_vllm_export.py`` and against a real load on an H200 by
``bench/vllm_h200.py``.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from model.config import FULL, LINEAR, M1Config

WEIGHTS = "model.safetensors"
_DECAY_BUFFERS = re.compile(r"\.self_attn\.(slope_rate|query_decay|key_decay|diagonal_decay)$")


def _hf_decay_buffers(cfg: M1Config, decay: torch.Tensor) -> dict[str, torch.Tensor]:
    """The block-decay tables transformers keeps as persistent buffers (written so it loads cleanly)."""
    slope = decay.float().cpu()[:, None, None]  # [H, 1, 1]
    r = torch.arange(cfg.block_size) + 1
    diag = slope * (r[:, None] - r[None, :])[None, None]  # [1, H, C, C]
    return {
        "slope_rate": slope,
        "query_decay": torch.exp(-slope * r[:, None]),
        "key_decay": torch.exp(-slope * (cfg.block_size - r[:, None])),
        "diagonal_decay": torch.exp(torch.where(diag >= 0, -diag, float("-inf"))),
    }


def save_checkpoint(model, out_dir: str | Path) -> Path:
    cfg: M1Config = model.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.rotary_dim != cfg.head_dim:
        warnings.warn(
            f"rotary_dim={cfg.rotary_dim} < head_dim={cfg.head_dim}: transformers' MiniMaxForCausalLM "
            "rotates the whole head and cannot express this; config.json keeps 'rotary_dim' for vLLM "
            "and M1ForCausalLM.from_pretrained",
            stacklevel=3,
        )
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    dtype = next(model.parameters()).dtype
    for i, layer in enumerate(model.model.layers):
        if hasattr(layer.self_attn, "decay"):
            for name, t in _hf_decay_buffers(cfg, layer.self_attn.decay).items():
                state[f"model.layers.{i}.self_attn.{name}"] = t.to(dtype)
    hf = cfg.to_hf_dict()
    hf["dtype"] = str(dtype).removeprefix("torch.")
    hf["transformers_cannot_express"] = (
        [f"rotary_dim={cfg.rotary_dim} (transformers rotates all {cfg.head_dim} dims)"]
        if cfg.rotary_dim != cfg.head_dim else []
    )
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    index = path / f"{WEIGHTS}.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (path / WEIGHTS).exists():
        files = [WEIGHTS]
    else:
        raise FileNotFoundError(f"{path}: no {WEIGHTS} or {WEIGHTS}.index.json")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(path / f)))
    return state


def _to_our_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if _DECAY_BUFFERS.search(k):
            continue
        m = re.match(r"(model\.layers\.\d+)\.mlp\.(.*)$", k)
        if not m:
            out[k] = v
            continue
        layer, rest = m.groups()
        if rest == "gate.weight":
            out[f"{layer}.block_sparse_moe.gate.weight"] = v
        elif rest == "experts.gate_up_proj":  # [E, 2I, d]: gate rows, then up rows
            gate, up = v.chunk(2, dim=1)
            for e in range(v.shape[0]):
                out[f"{layer}.block_sparse_moe.experts.{e}.w1.weight"] = gate[e]
                out[f"{layer}.block_sparse_moe.experts.{e}.w3.weight"] = up[e]
        elif rest == "experts.down_proj":  # [E, d, I]
            for e in range(v.shape[0]):
                out[f"{layer}.block_sparse_moe.experts.{e}.w2.weight"] = v[e]
        else:
            raise KeyError(f"unknown MoE weight {k!r}")
    return out


def load_checkpoint(cls, path: str | Path, dtype: torch.dtype | None = None, **overrides):
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}/config.json not found")
    raw = json.loads((path / "config.json").read_text())
    if raw.get("model_type", "minimax") != "minimax":
        raise ValueError(f"{path}/config.json: model_type {raw['model_type']!r} is not 'minimax'")
    cfg = M1Config.from_dict({**raw, **overrides})
    model = cls(cfg)
    state = _to_our_names(_read_weights(path))
    if cfg.tie_word_embeddings:
        state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"{path}: checkpoint does not match the config; missing {missing[:5]}, "
                       f"unexpected {unexpected[:5]}")
    if dtype is not None:
        model = model.to(dtype)
    return model


# Checkpoint names vLLM 0.23.0 reads for a MiniMax model (vllm/model_executor/models/minimax_text_01.py,
# MiniMaxText01Model.load_weights): ``{i}`` a layer, ``{e}`` an expert. Lightning layers (attention
# type 0) take qkv_proj/output_gate/out_proj/norm; softmax layers (type 1) q/k/v/o_proj; every layer
# the two norms and the MoE router + experts (w1, w3 -> w13_weight, w2 -> w2_weight).
VLLM_023_WEIGHTS = {
    "global": ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"),
    "layer": ("model.layers.{i}.input_layernorm.weight", "model.layers.{i}.post_attention_layernorm.weight",
              "model.layers.{i}.block_sparse_moe.gate.weight"),
    "expert": tuple(f"model.layers.{{i}}.block_sparse_moe.experts.{{e}}.{w}.weight" for w in ("w1", "w2", "w3")),
    LINEAR: tuple(f"model.layers.{{i}}.self_attn.{n}.weight" for n in ("qkv_proj", "output_gate", "out_proj", "norm")),
    FULL: tuple(f"model.layers.{{i}}.self_attn.{n}.weight" for n in ("q_proj", "k_proj", "v_proj", "o_proj")),
}


def vllm_weight_names(cfg: M1Config) -> set[str]:
    """Every checkpoint name vLLM 0.23 expects for ``cfg`` (``VLLM_023_WEIGHTS`` expanded)."""
    names = set(VLLM_023_WEIGHTS["global"])
    for i, kind in enumerate(cfg.layer_types):
        names.update(n.format(i=i) for n in VLLM_023_WEIGHTS["layer"] + VLLM_023_WEIGHTS[kind])
        names.update(n.format(i=i, e=e) for n in VLLM_023_WEIGHTS["expert"] for e in range(cfg.num_local_experts))
    return names


def save_vllm_export(model, out_dir: str | Path, *, dtype: torch.dtype, head_fp32: bool) -> Path:
    """``config.json`` + ``model.safetensors`` for vLLM 0.23 (``vllm.LLM(model=out_dir)``).

    Weights in ``dtype`` (vLLM runs the model in the checkpoint's dtype), except the LM head, kept in
    fp32 when ``head_fp32`` so vLLM's fp32 head (report section 3.2) computes with the trainer's
    exact weights instead of their bf16 rounding. Raises ``ValueError`` for what vLLM cannot load.
    """
    cfg: M1Config = model.config
    if cfg.num_local_experts < 2:
        raise ValueError(
            f"num_local_experts={cfg.num_local_experts}: vLLM 0.23 builds a dense MLP for one expert and then "
            "fails on the expert weights (KeyError: ...block_sparse_moe.experts.w13_weight); export >= 2 experts"
        )
    if cfg.tie_word_embeddings:
        raise ValueError("tie_word_embeddings=True: vLLM 0.23's MiniMax model always loads its own lm_head.weight")
    state = {k: v.detach().to(torch.float32 if head_fp32 and k == "lm_head.weight" else dtype).contiguous().cpu()
             for k, v in model.state_dict().items()}
    expected = vllm_weight_names(cfg)
    if set(state) != expected:
        raise KeyError(f"export names differ from vLLM 0.23's: missing {sorted(expected - set(state))[:5]}, "
                       f"unexpected {sorted(set(state) - expected)[:5]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hf = cfg.to_hf_dict()
    hf["dtype"] = str(dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(hf, indent=2) + "\n")
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    return out
