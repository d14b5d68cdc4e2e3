"""Training engines (plain PyTorch, DeepSpeed ZeRO) and rollout engines (PyTorch, vLLM).

Parallelism is applied here, from outside the model, and nowhere else: the model stays
single-device. Every trainer exposes the same small surface to the driver: ``module``, ``step(loss)
-> grad norm``, ``rates()`` (each parameter group's current learning rate), ``save(dir)`` /
``load(dir)``, and the few collectives the loop needs (``barrier``, ``all_true``, ``mean``), which
are no-ops in one process. Both trainers optimize the same parameter groups (``param_groups``) under
the same linear warmup (``warmup_schedule``).
"""

from __future__ import annotations

import importlib
import math
import os
from pathlib import Path

import torch


def head_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The head group: the output head (``get_output_embeddings()``; input embeddings tied to it come
    along) and the final norm ``model.norm`` where the model has one (M1, Llama, Qwen2, MiniMax)."""
    head = list(model.get_output_embeddings().parameters())
    norm = getattr(getattr(model, "model", None), "norm", None)
    if norm is not None:
        head += list(norm.parameters())
    return head


def param_groups(model: torch.nn.Module, *, lr: float, lr_head: float) -> list[dict]:
    """AdamW parameter groups ``{"name", "params", "lr"}``: ``head`` (``head_parameters``) at
    ``lr_head`` and ``body`` (every other weight) at ``lr``. A group whose rate is 0 is frozen
    (``requires_grad`` off, left out of the optimizer), so backward does not reach it."""
    head_ids = {id(p) for p in head_parameters(model)}
    params = {"head": [], "body": []}
    for p in model.parameters():
        params["head" if id(p) in head_ids else "body"].append(p)
    groups = []
    for name, rate in (("head", lr_head), ("body", lr)):
        for p in params[name]:
            p.requires_grad_(rate > 0)
        if rate > 0 and params[name]:
            groups.append({"name": name, "params": params[name], "lr": rate})
    if not groups:
        raise ValueError("rl: no parameter group has a learning rate > 0")
    return groups


def warmup_schedule(optimizer: torch.optim.Optimizer, updates: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup: update k (from 0) runs at ``(k + 1) / updates`` of each group's peak rate, the
    peak from update ``updates - 1`` on; ``updates = 0`` starts at the peak."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / updates) if updates > 0 else 1.0)


class TorchTrainer:
    """One process: AdamW (the report's betas and eps) over parameter groups, linear warmup,
    gradient-norm clipping."""

    rank, world_size, is_main = 0, 1, True

    def __init__(self, model: torch.nn.Module, *, groups: list[dict], warmup_updates: int, betas, adam_eps: float,
                 weight_decay: float, grad_clip: float):
        self.module = model
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(groups, betas=tuple(betas), eps=adam_eps, weight_decay=weight_decay)
        self.scheduler = warmup_schedule(self.optimizer, warmup_updates)

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip, step, advance the warmup; returns the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trained = [p for g in self.optimizer.param_groups for p in g["params"]]
        norm = torch.nn.utils.clip_grad_norm_(trained, self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return float(norm)

    def rates(self) -> dict[str, float]:
        """The learning rate the next update of each parameter group will use, by group name."""
        return {g["name"]: g["lr"] for g in self.optimizer.param_groups}

    def save(self, path: Path) -> None:
        torch.save(self.module.state_dict(), path / "model.pt")
        torch.save(self.optimizer.state_dict(), path / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), path / "scheduler.pt")

    def load(self, path: Path) -> None:
        self.module.load_state_dict(torch.load(path / "model.pt", weights_only=True))
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))

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

    def __init__(self, model, *, groups, warmup_updates, betas, adam_eps, weight_decay, grad_clip, zero_stage: int,
                 micro_batch: int):
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
        optimizer = torch.optim.AdamW(groups, betas=tuple(betas), eps=adam_eps, weight_decay=weight_decay)
        config = {
            "train_micro_batch_size_per_gpu": micro_batch,
            "gradient_accumulation_steps": 1,
            "gradient_clipping": grad_clip,
            "zero_optimization": {"stage": zero_stage},
            "zero_allow_untested_optimizer": True,
            "steps_per_print": 10**9,
        }
        # the engine steps the schedule after each optimizer step and checkpoints it
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, config=config, lr_scheduler=lambda opt: warmup_schedule(opt, warmup_updates))
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
    """The trainer ``cfg.train_engine`` names, over ``param_groups`` at ``cfg.lr`` / ``cfg.lr_head``."""
    kw = dict(groups=param_groups(model, lr=cfg.lr, lr_head=cfg.lr_head), warmup_updates=cfg.warmup_updates,
              betas=cfg.betas, adam_eps=cfg.adam_eps, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip)
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
    class. Prompts are token ids (``skip_tokenizer_init``). ``router``: the override's expert choice on
    bf16 (vLLM's) or fp32 router logits.

    Log-probs are vLLM's processed ones (after temperature, top-k, top-p): TorchEngine's contract
    (the tempered distribution before truncation) when top_k = 0 and top_p = 1, the RL setting.
    Early truncation (report section 3.2): ``EarlyTruncation`` forces the stop token once
    ``repetition_n`` tokens in a row had p > ``repetition_p``, so vLLM stops decoding the request;
    the reply is then cut after the N-th such token here, by the same rule as TorchEngine's, which
    also applies when vLLM cannot end it early (top-k / top-p set, or no stop token).
    """

    def __init__(self, model, export_dir: str | Path, settings, *, seed: int, router: str = "bf16") -> None:
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
            overrides = {"architectures": [ARCHITECTURE], "m1_prefill": settings.prefill, "m1_router": router}
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
    (no weight copy; on a CPU ``model.sharded.ShardedEngine`` over ``rl.threads`` processes sharing its
    weights, with the torch trainer; DeepSpeed's ranks already take the cores); ``"vllm"``,
    ``VLLMEngine`` (GPU only) with ``rl.vllm``'s settings, serving an export in ``out_dir/vllm_export``."""
    if cfg.rollout_engine == "vllm":
        return VLLMEngine(model, Path(out_dir) / "vllm_export", cfg.vllm, seed=cfg.seed)
    from model.sharded import make_engine

    return make_engine(model, pad_token_id=tokenizer.pad_token_id,
                       workers=cfg.threads if cfg.train_engine == "torch" else 1)
