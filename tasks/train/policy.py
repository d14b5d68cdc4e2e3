"""The policy: our M1 model or any Hugging Face causal LM, built from a spec, saved and loaded in
Hugging Face format with its tokenizer, and the chat encoding shared by SFT and RL.

A spec is a dict: ``{"arch": "m1", "preset": "tiny"}`` for ``model.M1ForCausalLM`` or
``{"arch": "llama" | "qwen2", **config_fields}`` for a randomly initialised transformers model.
``policy.json`` beside the weights records which class loads them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

_HF_CONFIGS = {"llama": ("LlamaConfig", "LlamaForCausalLM"), "qwen2": ("Qwen2Config", "Qwen2ForCausalLM")}


def build_policy(spec: dict[str, Any], tokenizer) -> torch.nn.Module:
    """A freshly initialised policy for ``spec`` with the tokenizer's vocabulary and special ids."""
    spec = dict(spec)
    arch = spec.pop("arch", None)
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if arch == "m1":
        from model import M1Config, M1ForCausalLM

        cfg = M1Config.preset(spec.pop("preset", "tiny"))
        known = {f.name for f in dataclasses.fields(cfg)}
        cfg = dataclasses.replace(cfg, **{k: v for k, v in {**ids, **spec}.items() if k in known})
        return M1ForCausalLM(cfg)
    if arch in _HF_CONFIGS:
        import transformers

        config_cls, model_cls = (getattr(transformers, n) for n in _HF_CONFIGS[arch])
        return model_cls(config_cls(**{**spec, **ids}))
    raise ValueError(f"policy spec: arch must be 'm1', 'llama' or 'qwen2', got {arch!r}")


def policy_arch(model: torch.nn.Module) -> str:
    return "m1" if type(model).__name__ == "M1ForCausalLM" else "hf"


def save_policy(model: torch.nn.Module, tokenizer, out_dir: str | Path) -> Path:
    """Weights (HF format), tokenizer and ``policy.json`` into ``out_dir``, swapped in atomically."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "policy.json").write_text(json.dumps({"arch": policy_arch(model)}) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


def load_policy(path: str | Path) -> tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` from a directory written by ``save_policy``."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json; expected a policy saved by tasks.train.sft (save_policy)")
    from model.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(path)
    arch = json.loads((path / "policy.json").read_text())["arch"] if (path / "policy.json").exists() else "hf"
    if arch == "m1":
        from model import M1ForCausalLM

        model = M1ForCausalLM.from_pretrained(path)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model, tokenizer


def encode_prompt(tokenizer, question: str) -> list[int]:
    """Token ids of a one-turn chat with the assistant turn opened (the rollout's prompt)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_reply(tokenizer, reply: str) -> list[int]:
    """Token ids of an assistant reply, closed with the eos token (``<|im_end|>``)."""
    return tokenizer(reply, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def resolve_device(name: str) -> torch.device:
    """``"auto"``: the GPU when there is one (DeepSpeed places each rank on its local GPU), else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


class SamplingPolicy:
    """A policy that answers questions: ``sample(questions, k)`` -> ``k`` sampled replies each.

    Samples through ``model.generation.TorchEngine`` in batches of ``batch_size`` sequences, from one
    generator seeded once, so a stream of calls is reproducible. Replies are decoded with special
    tokens kept, so the answer tags survive for the verifiers.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, sampling, *, batch_size: int, seed: int):
        from model.sharded import make_engine

        self.model, self.tok, self.sampling, self.batch_size = model.eval(), tokenizer, sampling, batch_size
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.engine = make_engine(model, pad_token_id=pad)
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @classmethod
    def load(cls, model_dir: str | Path, *, max_new_tokens: int, temperature: float, top_p: float,
             batch_size: int, seed: int, device: str) -> SamplingPolicy:
        """A policy directory (``save_policy``: our M1 or any HF causal LM) on ``device`` (auto: GPU if any)."""
        from model.generation import SamplingParams

        model, tok = load_policy(model_dir)
        model = model.to(resolve_device(device))
        sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                  stop_token_ids=(tok.eos_token_id,))
        return cls(model, tok, sampling, batch_size=batch_size, seed=seed)

    @property
    def workers(self) -> int:
        """Generation processes (``model.sharded``): each call takes ``batch_size`` sequences for each."""
        return self.engine.workers

    def sample(self, questions: list[str], k: int) -> list[list[str]]:
        prompts = [encode_prompt(self.tok, q) for q in questions for _ in range(k)]
        texts: list[str] = []
        step = self.batch_size * self.workers
        with torch.no_grad():
            for lo in range(0, len(prompts), step):
                out = self.engine.generate(prompts[lo : lo + step], self.sampling, generator=self.generator)
                texts += [self.tok.decode(t, skip_special_tokens=False) for t in out.tokens]
        return [texts[i * k : (i + 1) * k] for i in range(len(questions))]
