"""M1ForCausalLM against transformers' MiniMaxForCausalLM (the oracle), checkpoints both ways, config."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn.functional as F

from model import M1Config, M1ForCausalLM
from model.modeling import SparseMoE

transformers = pytest.importorskip("transformers")

CONFIGS = {
    # 7:1 pattern, two lightning blocks per sequence, odd length
    "tiny": dict(block_size=16),
    # non-power-of-two head count (decay slopes 2^(-8(h+1)/3)), multi-query softmax layer
    "heads3": dict(num_attention_heads=3, num_key_value_heads=1, head_dim=24, hidden_size=72, block_size=32),
    # 16 layers (two softmax layers), 6 experts top-3, tied embeddings, unit residual factors
    "deep": dict(num_hidden_layers=16, num_local_experts=6, num_experts_per_tok=3, tie_word_embeddings=True,
                 hidden_size=64, head_dim=16, intermediate_size=96, num_attention_heads=5, num_key_value_heads=5,
                 full_attn_alpha_factor=1.0, linear_attn_alpha_factor=1.0, mlp_alpha_factor=1.0),
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_and_loss_match_transformers(name, tmp_path):
    cfg = M1Config.preset("tiny", **CONFIGS[name])
    ours = M1ForCausalLM(cfg).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.MiniMaxForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 37))
    with torch.no_grad():
        a = ours(ids, labels=ids)
        b = hf(ids, labels=ids, output_router_logits=True)
    assert rel_err(a.logits, b.logits) < 1e-4
    assert abs(a.aux_loss.item() - b.aux_loss.item()) < 1e-5
    assert abs(a.loss.item() - b.loss.item()) < 1e-4


def test_left_padding_matches_transformers_with_mask(tmp_path):
    cfg = M1Config.preset("tiny", block_size=16)
    ours = M1ForCausalLM(cfg).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.MiniMaxForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, cfg.vocab_size, (2, 20))
    mask = torch.ones_like(ids)
    mask[0, :6] = 0  # left padding
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        a = ours(ids, attention_mask=mask).logits
        b = hf(ids, attention_mask=mask, position_ids=pos).logits
        alone = ours(ids[:1, 6:]).logits
    assert rel_err(a[1], b[1]) < 1e-4 and rel_err(a[0, 6:], b[0, 6:]) < 1e-4
    assert rel_err(a[0, 6:], alone[0]) < 1e-5  # a padded row is computed as if it were alone


def test_transformers_saved_checkpoint_loads(tmp_path):
    cfg = M1Config.preset("tiny", block_size=16)
    hf_cfg = transformers.MiniMaxConfig(**{k: v for k, v in cfg.to_hf_dict().items()
                                           if k not in ("rotary_dim", "lm_head_fp32", "kernel_backend", "model_type",
                                                        "architectures")})
    hf = transformers.MiniMaxForCausalLM(hf_cfg).eval()
    hf.save_pretrained(tmp_path)
    ours = M1ForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, cfg.vocab_size, (1, 29))
    with torch.no_grad():
        assert rel_err(ours(ids).logits, hf(ids).logits) < 1e-4
    # and our own round trip is exact
    ours.save_pretrained(tmp_path / "again")
    again = M1ForCausalLM.from_pretrained(tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(again(ids).logits, ours(ids).logits)


def test_partial_rotary_is_written_and_warned(tmp_path):
    cfg = M1Config.preset("tiny", rotary_dim=16)
    model = M1ForCausalLM(cfg)
    with pytest.warns(UserWarning, match="rotary_dim=16"):
        model.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["rotary_dim"] == 16 and written["transformers_cannot_express"]
    back = M1ForCausalLM.from_pretrained(tmp_path)
    assert back.config.rotary_dim == 16
    ids = torch.randint(0, cfg.vocab_size, (1, 12))
    with torch.no_grad():
        assert torch.equal(back(ids).logits, model(ids).logits)


def test_full_rotary_saves_without_warning(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        M1ForCausalLM(M1Config.preset("tiny")).save_pretrained(tmp_path)


def test_lightning_backends_agree():
    cfg = M1Config.preset("tiny", block_size=8)
    ids = torch.randint(0, cfg.vocab_size, (2, 21))
    ref = M1ForCausalLM(M1Config.preset("tiny", block_size=8, kernel_backend="recurrent")).eval()
    chunked = M1ForCausalLM(M1Config.preset("tiny", block_size=8, kernel_backend="reference")).eval()
    chunked.load_state_dict(ref.state_dict())
    with torch.no_grad():
        assert rel_err(chunked(ids).logits, ref(ids).logits) < 1e-5


@pytest.mark.parametrize("field,value,needle", [
    ("num_key_value_heads", 3, "num_key_value_heads"),
    ("rotary_dim", 7, "rotary_dim"),
    ("num_experts_per_tok", 9, "num_experts_per_tok"),
    ("layer_types", ["linear_attention"] * 3, "layer_types"),
    ("kernel_backend", "cuda", "kernel_backend"),
    ("hidden_size", 0, "hidden_size"),
])
def test_bad_config_names_the_field(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        M1Config.preset("tiny", **{field: value})


def test_tiny_pattern_and_parameter_count():
    cfg = M1Config.preset("tiny")
    assert cfg.layer_types == ["linear_attention"] * 7 + ["full_attention"]
    counts = cfg.num_parameters()
    assert counts["total"] == M1ForCausalLM(cfg).num_parameters()
    assert 1e6 < counts["total"] < 1e7 and counts["active"] < counts["total"]


def test_minimax_m1_preset_on_meta_device():
    cfg = M1Config.preset("minimax-m1")
    assert cfg.num_linear_layers == 70 and cfg.num_full_layers == 10 and cfg.rotary_dim == 64
    counts = cfg.num_parameters()
    assert abs(counts["total"] / 1e9 - 456) < 1.0  # report: 456B total
    assert abs(counts["active_non_embedding"] / 1e9 - 45.9) < 0.1  # report: 45.9B activated
    with torch.device("meta"):
        model = M1ForCausalLM(cfg)
    assert model.num_parameters() == counts["total"]


def test_training_step_reduces_loss():
    torch.manual_seed(0)
    model = M1ForCausalLM(M1Config.preset("tiny"))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    ids = torch.randint(0, 64, (4, 32))
    losses = []
    for _ in range(5):
        out = model(ids, labels=ids)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < losses[0] - 0.5


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = M1Config.preset("tiny")
    ids = torch.randint(0, cfg.vocab_size, (2, 24))
    plain, ckpt = M1ForCausalLM(cfg), M1ForCausalLM(cfg)
    ckpt.load_state_dict(plain.state_dict())
    ckpt.gradient_checkpointing_enable()
    plain(ids, labels=ids).loss.backward()
    ckpt(ids, labels=ids).loss.backward()
    for (name, a), b in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_original_minimax_config_names_are_read():
    cfg = M1Config.from_dict({
        "hidden_size": 64, "num_attention_heads": 4, "head_dim": 16, "num_key_value_heads": 2, "num_hidden_layers": 4,
        "attn_type_list": [0, 0, 0, 1], "layernorm_mlp_alpha": 3.5, "rotary_dim": 8, "rope_theta": 1e7,
    })
    assert cfg.layer_types == ["linear_attention"] * 3 + ["full_attention"]
    assert cfg.mlp_alpha_factor == 3.5 and cfg.rotary_dim == 8 and cfg.rope_theta == 1e7


def test_a_bf16_moe_routes_on_fp32_router_logits():
    torch.manual_seed(0)
    cfg = M1Config.preset("tiny")
    moe = SparseMoE(cfg)
    x = torch.randn(4096, cfg.hidden_size).bfloat16()
    fp32_logits = F.linear(x.float(), moe.gate.weight.bfloat16().float())
    out, logits = moe.bfloat16()(x)
    assert out.dtype == torch.bfloat16 and logits.dtype == torch.float32
    assert torch.equal(logits, fp32_logits)  # the weights are exact in bf16, so this is the fp32 choice
    bf16_choice = torch.topk(moe.gate(x).float(), cfg.num_experts_per_tok, dim=-1).indices.sort(-1).values
    fp32_choice = torch.topk(fp32_logits, cfg.num_experts_per_tok, dim=-1).indices.sort(-1).values
    assert (bf16_choice != fp32_choice).any(-1).sum() > 0  # what a bf16 GEMM router would have chosen
