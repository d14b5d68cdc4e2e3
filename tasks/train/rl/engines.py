"""Training engines (plain PyTorch, DeepSpeed ZeRO) and rollout engines (PyTorch, vLLM).

Parallelism is applied here, from outside the model, and nowhere else: the model stays
single-device. Every trainer exposes the same small surface to the driver: ``module``, ``step(loss)
-> grad norm``, ``save(dir)`` / ``load(dir)``, and the few collectives the loop needs (``barrier``,
``all_true``, ``mean``), which are no-ops in one process.
"""

from __future__ import annotations

import importlib
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


class VLLMEngine:
    """vLLM rollouts behind ``model.generation.TorchEngine``'s ``generate`` (``pip install '.[gpu]'``).

    GPU only, and not run in this project's CPU environment or tests: written against vLLM 0.32's
    ``LLM`` API and unverified. The policy is exported in HF format once (vLLM serves M1 as
    ``MiniMaxText01ForCausalLM``); ``sync_weights`` pushes updated weights into the in-process
    engine after each training step. Log-probs are requested after temperature / top-p
    (``logprobs_mode="processed_logprobs"``) to match TorchEngine's contract.
    """

    def __init__(self, model, tokenizer, export_dir: str | Path, gpu_memory_utilization: float = 0.3):
        from vllm import LLM

        from tasks.train.policy import save_policy

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process, so weights can be pushed
        save_policy(model, tokenizer, export_dir)
        self.llm = LLM(
            model=str(export_dir),
            gpu_memory_utilization=gpu_memory_utilization,
            enforce_eager=True,
            logprobs_mode="processed_logprobs",
        )

    def generate(self, prompts, params, generator=None):
        from vllm import SamplingParams, TokensPrompt

        from model.generation import GenerationOutput

        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device)) if generator is not None else None
        sp = SamplingParams(
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else -1,
            max_tokens=params.max_new_tokens,
            stop_token_ids=list(params.stop_token_ids),
            logprobs=0,
            seed=seed,
        )
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], sp, use_tqdm=False)
        tokens, logprobs, reasons = [], [], []
        for out in outs:
            c = out.outputs[0]
            tokens.append(list(c.token_ids))
            logprobs.append([lp[t].logprob for t, lp in zip(c.token_ids, c.logprobs)])
            reasons.append("eos" if c.finish_reason == "stop" else "length")
        return GenerationOutput(tokens=tokens, logprobs=logprobs, finish_reasons=reasons)

    def sync_weights(self, model: torch.nn.Module) -> None:
        weights = list(model.state_dict().items())
        self.llm.collective_rpc(lambda worker: worker.model_runner.model.load_weights(weights))


def make_rollout_engine(kind: str, model, tokenizer, out_dir: str | Path):
    """``"torch"``: ``model.generation.TorchEngine`` on the training module itself (no weight copy);
    ``"vllm"``: ``VLLMEngine`` (GPU only)."""
    if kind == "vllm":
        return VLLMEngine(model, tokenizer, Path(out_dir) / "vllm_export")
    from model.generation import TorchEngine

    return TorchEngine(model, pad_token_id=tokenizer.pad_token_id)
