"""Training engines (plain PyTorch, DeepSpeed ZeRO) and rollout engines (PyTorch, vLLM).

Parallelism is applied here, from outside the model, and nowhere else: the model stays
single-device. Every trainer exposes the same small surface to the driver: ``module``, ``step(loss)
-> grad norm``, ``save(dir)`` / ``load(dir)``, and the few collectives the loop needs (``barrier``,
``all_true``, ``mean``), which are no-ops in one process.
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path

import torch


class TorchTrainer:
    """One process: AdamW (the report's betas and eps) with gradient-norm clipping."""

    rank, world_size, is_main = 0, 1, True

    def __init__(self, model: torch.nn.Module, *, lr: float, betas, adam_eps: float, weight_decay: float, grad_clip: float):
        self.module = model
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=tuple(betas), eps=adam_eps, weight_decay=weight_decay)

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip, step; returns the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.grad_clip)
        self.optimizer.step()
        return float(norm)

    def save(self, path: Path) -> None:
        torch.save(self.module.state_dict(), path / "model.pt")
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")

    def load(self, path: Path) -> None:
        self.module.load_state_dict(torch.load(path / "model.pt", weights_only=True))
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))

    def barrier(self) -> None:
        pass

    def all_true(self, flag: bool) -> bool:
        return flag

    def mean(self, value: float) -> float:
        return value


class DeepSpeedTrainer(TorchTrainer):
    """DeepSpeed ZeRO (stage 1 or 2) over a torch AdamW, data parallel across ranks.

    Launch one process per rank with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` set (``deepspeed`` / ``torchrun`` do this). On CPU set ``DS_ACCELERATOR=cpu``;
    the process group then uses gloo. A torch optimizer needs ``zero_allow_untested_optimizer``
    (DeepSpeed's fused CPU Adam would compile for about a minute).
    """

    def __init__(self, model, *, lr, betas, adam_eps, weight_decay, grad_clip, zero_stage: int, micro_batch: int):
        import deepspeed
        import torch.distributed as dist

        if not dist.is_initialized():
            on_cpu = os.environ.get("DS_ACCELERATOR") == "cpu" or not torch.cuda.is_available()
            if on_cpu:
                # DeepSpeed's CPU shared-memory all-reduce is a C++ extension compiled on first use
                # (minutes on a busy CPU, cached under the home directory); gloo alone suffices here.
                importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
            deepspeed.init_distributed(dist_backend="gloo" if on_cpu else "nccl")
        self._dist = dist
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=tuple(betas), eps=adam_eps, weight_decay=weight_decay)
        config = {
            "train_micro_batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": grad_clip,
            "zero_optimization": {"stage": zero_stage},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
        }
        self.engine, self.optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
        self.module = self.engine.module
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.is_main = self.rank == 0

    def step(self, loss: torch.Tensor) -> float:
        self.engine.backward(loss)
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save(self, path: Path) -> None:
        self.engine.save_checkpoint(str(path), tag="ds")

    def load(self, path: Path) -> None:
        self.engine.load_checkpoint(str(path), tag="ds")

    def barrier(self) -> None:
        self._dist.barrier()

    def all_true(self, flag: bool) -> bool:
        t = torch.tensor([int(flag)], device=self.engine.device)  # NCCL reduces GPU tensors only
        self._dist.all_reduce(t, op=self._dist.ReduceOp.MIN)
        return bool(t.item())

    def mean(self, value: float) -> float:
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.engine.device)
        self._dist.all_reduce(t)
        return float(t.item()) / self.world_size


def make_trainer(model: torch.nn.Module, cfg, micro_batch: int) -> TorchTrainer:
    kw = dict(lr=cfg.lr, betas=cfg.betas, adam_eps=cfg.adam_eps, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
    if cfg.train_engine == "deepspeed":
        return DeepSpeedTrainer(model, zero_stage=cfg.zero_stage, micro_batch=micro_batch, **kw)
    return TorchTrainer(model, **kw)


FA3_HEAD_DIMS = (64, 96, 128, 192, 256)


class VLLMEngine:
    """vLLM 0.23 rollouts behind ``model.generation.TorchEngine``'s ``generate`` (GPU only; ``pip install -e '.[gpu]'``).

    The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so ``sync_weights`` can copy
    the trainer's tensors straight into vLLM's. An M1 policy is exported with
    ``model.checkpoint.save_vllm_export`` (bf16, the LM head in fp32 when ``lm_head_fp32``) and served by
    ``tasks.train.rl.vllm_m1.M1VLLMForCausalLM`` (vLLM's MiniMax model with the trainer's decay rates
    and an explicit fp32 / bf16 head); any other policy goes through ``save_pretrained`` and vLLM's own
    class. Prompts are token ids (``skip_tokenizer_init``).

    Log-probs are vLLM's processed ones (after temperature, top-k, top-p): TorchEngine's contract
    (the tempered distribution before truncation) when top_k = 0 and top_p = 1, the RL setting.
    Early truncation (report section 3.2): ``EarlyTruncation`` forces the stop token once
    ``repetition_n`` tokens in a row had p > ``repetition_p``, so vLLM stops decoding the request;
    the reply is then cut after the N-th such token here, by the same rule as TorchEngine's, which
    also applies when vLLM cannot end it early (top-k / top-p set, or no stop token).
    """

    def __init__(self, model, export_dir: str | Path, settings, *, seed: int) -> None:
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: weights can be copied in
        os.environ.setdefault("VLLM_USE_FLASHINFER_SAMPLER", "0")
        from vllm import LLM

        from model import M1ForCausalLM
        from model.checkpoint import save_vllm_export
        from tasks.train.rl.vllm_m1 import ARCHITECTURE, EarlyTruncation, register

        register()
        export_dir = Path(export_dir)
        overrides, attention = {}, {}
        if isinstance(model, M1ForCausalLM):
            save_vllm_export(model, export_dir, dtype=torch.bfloat16, head_fp32=model.config.lm_head_fp32)
            overrides = {"architectures": [ARCHITECTURE], "m1_prefill": settings.prefill}
            if model.config.head_dim not in FA3_HEAD_DIMS:  # FlashAttention 3 kernels exist for these only
                attention = {"attention_config": {"backend": "TRITON_ATTN"}}
        else:
            model.save_pretrained(export_dir)
        graphs = {"mode": 0, "cudagraph_mode": "FULL_DECODE_ONLY",
                  "cudagraph_capture_sizes": sorted({min(2**i, settings.max_num_seqs) for i in range(12)})}
        self.llm = LLM(
            model=str(export_dir), skip_tokenizer_init=True, dtype="bfloat16", seed=seed,
            hf_overrides=overrides, gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=settings.max_model_len, max_num_seqs=settings.max_num_seqs,
            enable_prefix_caching=False, logprobs_mode="processed_logprobs",
            logits_processors=[EarlyTruncation],
            **attention, **({"compilation_config": graphs} if settings.cuda_graphs else {"enforce_eager": True}),
        )

    def generate(self, prompts, params, generator=None):
        """``TorchEngine.generate``'s contract: token ids in, ``GenerationOutput`` out."""
        from vllm import SamplingParams, TokensPrompt

        from model.generation import GenerationOutput
        from tasks.train.rl.vllm_m1 import TRUNCATION_KEY

        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        seed = None
        if generator is not None:  # per-request seeds drawn from the caller's generator: reproducible
            seed = int(torch.randint(0, 2**31 - len(prompts), (1,), generator=generator, device=generator.device))
        early = params.top_k == 0 and params.top_p >= 1.0 and params.stop_token_ids
        extra = {TRUNCATION_KEY: {"n": params.repetition_n, "p": params.repetition_p,
                                  "stop": params.stop_token_ids[0]}} if early else None
        requests = [
            SamplingParams(
                temperature=params.temperature, top_p=params.top_p, top_k=params.top_k if params.top_k > 0 else -1,
                max_tokens=params.max_new_tokens, stop_token_ids=list(params.stop_token_ids), logprobs=0,
                seed=None if seed is None else seed + i, extra_args=extra, detokenize=False,
            )
            for i in range(len(prompts))
        ]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], requests, use_tqdm=False)
        threshold = math.log(params.repetition_p) if params.repetition_p > 0 else -math.inf
        tokens, logprobs, reasons = [], [], []
        for out in outs:
            c = out.outputs[0]
            toks = list(c.token_ids)
            lps = [lp[t].logprob for t, lp in zip(toks, c.logprobs)]
            reason = "eos" if c.finish_reason == "stop" else "length"
            cut = repetition_cut(lps, params.repetition_n, threshold)
            # a forced stop follows the cut; a cut at the very end is "repetition" unless a real stop token ended it
            if cut is not None and (cut < len(toks) or reason == "length"):
                toks, lps, reason = toks[:cut], lps[:cut], "repetition"
            tokens.append(toks)
            logprobs.append(lps)
            reasons.append(reason)
        return GenerationOutput(tokens=tokens, logprobs=logprobs, finish_reasons=reasons)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Copy the trainer's weights into vLLM's (same process, device to device; bf16 body, fp32 head)."""
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]
        self.llm.apply_model(lambda vllm_model: vllm_model.load_weights(weights))
        self.llm.reset_prefix_cache()


def repetition_cut(logprobs: list[float], n: int, threshold: float) -> int | None:
    """Length to keep under early truncation: up to the n-th consecutive token with log-prob above
    ``threshold`` (TorchEngine's rule), or None if no such run."""
    streak = 0
    for i, lp in enumerate(logprobs):
        streak = streak + 1 if lp > threshold else 0
        if streak >= n:
            return i + 1
    return None


def make_rollout_engine(cfg, model, tokenizer, out_dir: str | Path):
    """``rl.rollout_engine``: ``"torch"``, ``model.generation.TorchEngine`` on the training module itself
    (no weight copy); ``"vllm"``, ``VLLMEngine`` (GPU only) with ``rl.vllm``'s settings, serving an
    export in ``out_dir/vllm_export``."""
    if cfg.rollout_engine == "vllm":
        return VLLMEngine(model, Path(out_dir) / "vllm_export", cfg.vllm, seed=cfg.seed)
    from model.generation import TorchEngine

    return TorchEngine(model, pad_token_id=tokenizer.pad_token_id)
