"""The vLLM export: exactly the checkpoint names vLLM 0.23 loads, no decay buffers, an fp32 head
that stays fp32, and clear refusals for what vLLM cannot load. The names are checked against
``model.checkpoint.VLLM_023_WEIGHTS`` (read from vLLM 0.23.0's minimax_text_01.py) and against the
list vLLM itself consumed when it loaded the issue-15 export on an H200
(``bench/results/vllm_loaded_names.txt``, written by ``bench/vllm_h200.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from model import M1Config, M1ForCausalLM
from model.checkpoint import save_vllm_export, vllm_weight_names

ROOT = Path(__file__).resolve().parents[1]
# the random export of bench/vllm_h200.py (issue 15)
H200_EXPORT = dict(vocab_size=32768, hidden_size=1024, intermediate_size=1024, num_hidden_layers=8,
                   num_attention_heads=8, num_key_value_heads=4, head_dim=128, num_local_experts=4)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return M1ForCausalLM(M1Config.preset("tiny"))


def _keys(path: Path) -> dict[str, torch.dtype]:
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: f.get_slice(k).get_dtype() for k in f.keys()}


def test_export_has_exactly_the_names_vllm_reads(tiny, tmp_path):
    save_vllm_export(tiny, tmp_path, dtype=torch.bfloat16, head_fp32=True)
    keys = _keys(tmp_path)
    assert set(keys) == vllm_weight_names(tiny.config)
    assert not [k for k in keys if k.endswith(("slope_rate", "query_decay", "key_decay", "diagonal_decay"))]
    # one lightning layer, one softmax layer and one expert, spelled out
    for name in ("model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.self_attn.output_gate.weight",
                 "model.layers.0.self_attn.norm.weight", "model.layers.7.self_attn.q_proj.weight",
                 "model.layers.7.self_attn.o_proj.weight", "model.layers.3.block_sparse_moe.experts.3.w2.weight",
                 "model.layers.3.block_sparse_moe.gate.weight", "lm_head.weight", "model.norm.weight"):
        assert name in keys


def test_export_dtypes_and_config(tiny, tmp_path):
    save_vllm_export(tiny, tmp_path, dtype=torch.bfloat16, head_fp32=True)
    keys = _keys(tmp_path)
    assert keys.pop("lm_head.weight") == "F32"
    assert set(keys.values()) == {"BF16"}
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["dtype"] == "bfloat16" and cfg["architectures"] == ["MiniMaxForCausalLM"]
    assert cfg["attn_type_list"] == [0] * 7 + [1] and cfg["postnorm"] is True and cfg["rotary_dim"] == 32
    save_vllm_export(tiny, tmp_path / "bf16", dtype=torch.bfloat16, head_fp32=False)
    assert _keys(tmp_path / "bf16")["lm_head.weight"] == "BF16"


def test_export_loads_back_into_our_model(tiny, tmp_path):
    save_vllm_export(tiny, tmp_path, dtype=torch.bfloat16, head_fp32=True)
    back = M1ForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(back.lm_head.weight, tiny.lm_head.weight)  # the fp32 head, unrounded
    w = tiny.model.layers[0].self_attn.qkv_proj.weight
    assert torch.equal(back.model.layers[0].self_attn.qkv_proj.weight, w.bfloat16().float())


def test_vllm_cannot_load_one_expert(tmp_path):
    model = M1ForCausalLM(M1Config.preset("tiny", num_local_experts=1, num_experts_per_tok=1))
    with pytest.raises(ValueError, match="num_local_experts=1.*w13_weight"):
        save_vllm_export(model, tmp_path, dtype=torch.bfloat16, head_fp32=True)


def test_names_match_what_vllm_loaded_on_the_h200():
    recorded = ROOT / "bench/results/vllm_loaded_names.txt"
    names = set(recorded.read_text().split())
    with torch.device("meta"):
        model = M1ForCausalLM(M1Config(**H200_EXPORT))
    assert names == vllm_weight_names(model.config) == set(model.state_dict())
