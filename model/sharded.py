"""Generation and training on several CPU processes of one thread each, over one copy of the weights.

Decoding a small model on a CPU is dispatch overhead and small GEMMs: a second torch thread buys
almost nothing (the tiny preset's 128 replies of up to 96 tokens: 1,130 tokens/s on 2 threads,
1,060 on 1), while a second process of one thread doubles the rate (two at once: 1,050 each;
LOG.md, issue 11). ``ShardedEngine`` deals each ``generate`` call's rows out to ``workers`` shards
(row i to shard i mod workers, so the samples of each prompt spread evenly and so does the work),
decodes the first in this process (on one thread for the duration) and the others in spawned worker
processes, and joins the outputs in row order. It pays where a call holds a batch for each worker:
one call's 128 rows split in two gain only 1.25x, as every half still takes every decode step.
``ShardedBackward`` does the same for a training step's micro-batches (SFT): each process
backwards its share, and the workers' gradients are added to this process's. It pays where a
micro-batch is GEMM work (SFT: 1.27x over 2 threads), not for RL's minibatches of short replies,
whose per-op overhead every part pays again (1.03x; LOG.md).

The workers read the caller's parameters, not a copy: ``module.share_memory()`` moves every parameter
and buffer into shared memory, and the module is handed to each worker once, so the in-place updates of
an optimizer (RL, SFT) or of ``load_state_dict`` are what the next call computes with. Code that replaces
a parameter's storage (``param.data = ...``, ``module.to(...)``) is noticed before the next call and the
workers restart on the new tensors.

Each shard samples from its own generator, seeded by draws from the caller's, so a call is
reproducible for a given number of workers (not across numbers: the rows' random streams differ).
Only CPU models shard; on a GPU ``make_engine`` returns the plain ``TorchEngine``.
"""

from __future__ import annotations

import sys
import traceback
import types
from multiprocessing.connection import Connection

import torch
import torch.multiprocessing as mp

from model.generation import GenerationOutput, SamplingParams, TorchEngine


def _serve_jobs(conn: Connection, handle) -> None:
    """A worker's loop: answer each job sent on ``conn`` with ``("ok", handle(job))``, or ``("error",
    traceback)`` for the parent to raise, until the connection closes (or None arrives)."""
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        try:
            conn.send(("ok", handle(job)))
        except Exception:
            conn.send(("error", traceback.format_exc()))


def _serve(model: torch.nn.Module, pad_token_id: int, decode: str, conn: Connection) -> None:
    """A worker: decode the shards sent on ``conn``."""
    torch.set_num_threads(1)
    engine = TorchEngine(model, pad_token_id=pad_token_id, decode=decode)
    _serve_jobs(conn, lambda job: engine.generate(job[0], job[1], torch.Generator().manual_seed(job[2])))


def _reply(proc, conn: Connection) -> tuple[str, object]:
    try:
        return conn.recv()
    except EOFError:
        return "error", f"the worker exited (code {proc.exitcode})"


class _Workers:
    """``workers - 1`` spawned processes that run ``target(model, *args, conn)`` over the caller's
    weights (shared memory), restarted when the caller replaces a parameter's storage."""

    def __init__(self, model: torch.nn.Module, workers: int, what: str) -> None:
        self._procs: list = []
        self._conns: list[Connection] = []
        if workers < 2:
            raise ValueError(f"{type(self).__name__} needs workers >= 2, got {workers}")
        if next(model.parameters()).device.type != "cpu":
            raise ValueError(f"{type(self).__name__} shards CPU {what}; on a GPU run it in this process")
        self.model, self.workers = model, workers
        self._shared: list[int] = []

    def _tensors(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]

    def _start(self, target, args, *, sees_main: bool = False) -> None:
        self.model.share_memory()
        self._shared = [t.data_ptr() for t in self._tensors()]
        ctx = mp.get_context("spawn")
        # a spawned child first imports the caller's __main__ (a script without a main guard would run
        # again, a stage's module costs seconds); a worker that needs nothing from it sees none, one
        # that is sent its functions (a stage run as ``python -m`` defines its loss there) imports it
        main = sys.modules["__main__"]
        if not sees_main:
            sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            for i in range(self.workers - 1):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=target, args=(self.model, *args(i), child), daemon=True)
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
        finally:
            sys.modules["__main__"] = main

    def _restart_if_replaced(self) -> None:
        if [t.data_ptr() for t in self._tensors()] != self._shared:  # storage replaced: share the new one
            self.close()
            self._start_workers()

    def _start_workers(self) -> None:
        raise NotImplementedError

    def _replies(self, n: int) -> list:
        """Every one of the first ``n`` workers' replies, failed or not (so the next call's replies
        are its own); raises on the first failure."""
        replies = [_reply(proc, conn) for proc, conn in zip(self._procs[:n], self._conns[:n])]
        for proc, (status, result) in zip(self._procs, replies):
            if status != "ok":
                raise RuntimeError(f"{type(self).__name__} worker {proc.pid} failed:\n{result}")
        return [result for _, result in replies]

    def _on_one_thread(self, fn):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        """Stop the workers (also at garbage collection and, as daemons, at exit)."""
        for conn in self._conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            conn.close()
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
        self._procs, self._conns = [], []

    def __del__(self) -> None:
        self.close()


class ShardedEngine(_Workers):
    """``TorchEngine.generate`` over ``workers`` single-thread processes (this one included)."""

    def __init__(self, model: torch.nn.Module, *, workers: int, pad_token_id: int = 0, decode: str = "auto") -> None:
        super().__init__(model, workers, "decoding")
        self.pad_token_id, self.decode = pad_token_id, decode
        self.local = TorchEngine(model, pad_token_id=pad_token_id, decode=decode)
        self._start_workers()

    def _start_workers(self) -> None:
        self._start(_serve, lambda i: (self.pad_token_id, self.decode))

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 generator: torch.Generator | None = None) -> GenerationOutput:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        self._restart_if_replaced()
        n = min(self.workers, len(prompts))
        seeds = (torch.randint(0, 2**62, (n,), generator=generator).tolist() if generator is not None
                 else [0] * n)
        shards = [prompts[i::n] for i in range(n)]  # rows dealt out: each prompt's samples in every shard
        for conn, shard, seed in zip(self._conns, shards[1:], seeds[1:]):
            conn.send((shard, params, seed))
        try:
            local = self._on_one_thread(
                lambda: self.local.generate(shards[0], params, torch.Generator().manual_seed(seeds[0])))
        finally:
            rest = self._replies(n - 1)
        outputs = [local, *rest]
        order = [(i % n, i // n) for i in range(len(prompts))]  # (shard, row in it) of each row
        return GenerationOutput(
            tokens=[outputs[s].tokens[r] for s, r in order],
            logprobs=[outputs[s].logprobs[r] for s, r in order],
            finish_reasons=[outputs[s].finish_reasons[r] for s, r in order],
        )


def _grad_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def backward_jobs(model: torch.nn.Module, loss_fn, jobs: list[tuple]) -> float:
    """``loss_fn(model, *job).backward()`` for each job, in order; the summed loss."""
    total = 0.0
    for job in jobs:
        loss = loss_fn(model, *job)
        loss.backward()
        total += loss.item()
    return total


def _serve_grads(model: torch.nn.Module, grads: torch.Tensor, conn: Connection) -> None:
    """A worker: backward the jobs sent on ``conn`` and write the gradient into ``grads`` (flat, shared)."""
    torch.set_num_threads(1)
    params = _grad_params(model)

    def handle(job) -> tuple[float, list[bool]]:
        training, loss_fn, jobs = job
        model.train(training)
        for p in params:
            p.grad = None
        loss = backward_jobs(model, loss_fn, jobs)
        has_grad, at = [], 0
        for p in params:
            n = p.numel()
            has_grad.append(p.grad is not None)
            if p.grad is not None:
                grads[at : at + n].copy_(p.grad.reshape(-1))
            at += n
        return loss, has_grad

    _serve_jobs(conn, handle)


class ShardedBackward(_Workers):
    """Gradients of a sum of losses over ``workers`` single-thread processes (this one included),
    over one copy of the weights.

    A second torch thread speeds a small model's training step little (LOG.md, issue 11); a second
    process of one thread runs a second share of the micro-batches beside it. ``backward`` runs
    ``shards[0]`` here and ``shards[i]`` in worker ``i``, and adds the workers' gradients to this
    process's ``.grad``: the gradient of the whole sum, as one process accumulating every job would
    compute it up to the order of the float additions. The optimizer steps here, in place, on the
    shared weights, so the workers compute the next step's gradients with the updated weights.
    """

    def __init__(self, model: torch.nn.Module, *, workers: int) -> None:
        super().__init__(model, workers, "training")
        self._buffers: list[torch.Tensor] = []
        self._start_workers()

    def _start_workers(self) -> None:
        size = sum(p.numel() for p in _grad_params(self.model))
        self._buffers = [torch.zeros(size).share_memory_() for _ in range(self.workers - 1)]
        self._start(_serve_grads, lambda i: (self._buffers[i],), sees_main=True)

    def backward(self, loss_fn, shards: list[list[tuple]]) -> float:
        """Accumulate into each parameter's ``.grad`` the gradient of the sum of ``loss_fn(model,
        *job)`` (a scalar) over every job of every shard; returns that sum. ``loss_fn`` is a
        module-level function (the workers import its module, ``__main__`` included); ``shards``
        holds at most ``workers`` lists of picklable jobs."""
        if len(shards) > self.workers:
            raise ValueError(f"backward: {len(shards)} shards for {self.workers} workers")
        self._restart_if_replaced()
        for conn, jobs in zip(self._conns, shards[1:]):
            conn.send((self.model.training, loss_fn, jobs))
        try:
            total = self._on_one_thread(lambda: backward_jobs(self.model, loss_fn, shards[0]))
        finally:
            replies = self._replies(len(shards) - 1)
        params = _grad_params(self.model)
        for buf, (loss, has_grad) in zip(self._buffers, replies):
            total += loss
            at = 0
            for p, has in zip(params, has_grad):
                n = p.numel()
                if has:
                    g = buf[at : at + n].view_as(p)
                    p.grad = g.clone() if p.grad is None else p.grad.add_(g)
                at += n
        return total


#: generation workers of engines made without ``workers`` (``set_cores``)
_cores = 1


def set_cores(n: int) -> None:
    """This process uses ``n`` CPU cores: ``n`` torch threads (training, scoring) and ``n``
    single-thread generation workers for the engines ``make_engine`` makes from now on."""
    global _cores
    if n < 1:
        raise ValueError(f"set_cores: n must be >= 1, got {n}")
    torch.set_num_threads(n)
    _cores = n


def make_engine(model: torch.nn.Module, *, pad_token_id: int = 0, decode: str = "auto",
                workers: int | None = None) -> TorchEngine | ShardedEngine:
    """``ShardedEngine`` for a CPU model and more than one worker (default: ``set_cores``'s), else
    ``TorchEngine``."""
    workers = _cores if workers is None else workers
    if workers > 1 and next(model.parameters()).device.type == "cpu":
        return ShardedEngine(model, workers=workers, pad_token_id=pad_token_id, decode=decode)
    return TorchEngine(model, pad_token_id=pad_token_id, decode=decode)
