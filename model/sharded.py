"""Generation on several CPU processes of one thread each, over one copy of the weights.

Decoding a small model on a CPU is dispatch overhead and small GEMMs: a second torch thread buys
almost nothing (the tiny preset's 128 replies of up to 96 tokens: 1,130 tokens/s on 2 threads,
1,060 on 1), while a second process of one thread doubles the rate (two at once: 1,050 each;
LOG.md, issue 11). ``ShardedEngine`` deals each ``generate`` call's rows out to ``workers`` shards
(row i to shard i mod workers, so the samples of each prompt spread evenly and so does the work),
decodes the first in this process (on one thread for the duration) and the others in spawned worker
processes, and joins the outputs in row order. It pays where a call holds a batch for each worker:
one call's 128 rows split in two gain only 1.25x, as every half still takes every decode step.

The workers read the caller's parameters, not a copy: ``module.share_memory()`` moves every parameter
and buffer into shared memory, and the module is handed to each worker once, so the in-place updates of
an optimizer (RL) or of ``load_state_dict`` are what the next call decodes with. Code that replaces a
parameter's storage (``param.data = ...``, ``module.to(...)``) is noticed before the next call and the
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


def _serve(model: torch.nn.Module, pad_token_id: int, decode: str, conn: Connection) -> None:
    """A worker: decode the shards sent on ``conn`` until it closes (or None arrives)."""
    torch.set_num_threads(1)
    engine = TorchEngine(model, pad_token_id=pad_token_id, decode=decode)
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        prompts, params, seed = job
        try:
            conn.send(("ok", engine.generate(prompts, params, torch.Generator().manual_seed(seed))))
        except Exception:  # the parent raises it with this traceback
            conn.send(("error", traceback.format_exc()))


def _reply(proc, conn: Connection) -> tuple[str, object]:
    try:
        return conn.recv()
    except EOFError:
        return "error", f"the worker exited (code {proc.exitcode})"


class ShardedEngine:
    """``TorchEngine.generate`` over ``workers`` single-thread processes (this one included)."""

    def __init__(self, model: torch.nn.Module, *, workers: int, pad_token_id: int = 0, decode: str = "auto") -> None:
        self._procs: list = []
        self._conns: list[Connection] = []
        if workers < 2:
            raise ValueError(f"ShardedEngine needs workers >= 2, got {workers}; use TorchEngine")
        if next(model.parameters()).device.type != "cpu":
            raise ValueError("ShardedEngine shards CPU decoding; on a GPU use TorchEngine")
        self.model, self.workers = model, workers
        self.pad_token_id, self.decode = pad_token_id, decode
        self.local = TorchEngine(model, pad_token_id=pad_token_id, decode=decode)
        self._shared: list[int] = []
        self._start()

    def _tensors(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]

    def _start(self) -> None:
        self.model.share_memory()
        self._shared = [t.data_ptr() for t in self._tensors()]
        ctx = mp.get_context("spawn")
        # a spawned child first imports the caller's __main__ (a script without a main guard would run
        # again, a stage's module costs seconds); the worker needs nothing from it, so it sees none
        main = sys.modules["__main__"]
        sys.modules["__main__"] = types.ModuleType("__main__")
        try:
            for _ in range(self.workers - 1):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(self.model, self.pad_token_id, self.decode, child), daemon=True)
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
        finally:
            sys.modules["__main__"] = main

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

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams,
                 generator: torch.Generator | None = None) -> GenerationOutput:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        if [t.data_ptr() for t in self._tensors()] != self._shared:  # storage replaced: share the new one
            self.close()
            self._start()
        n = min(self.workers, len(prompts))
        seeds = (torch.randint(0, 2**62, (n,), generator=generator).tolist() if generator is not None
                 else [0] * n)
        shards = [prompts[i::n] for i in range(n)]  # rows dealt out: each prompt's samples in every shard
        for conn, shard, seed in zip(self._conns, shards[1:], seeds[1:]):
            conn.send((shard, params, seed))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            outputs = [self.local.generate(shards[0], params, torch.Generator().manual_seed(seeds[0]))]
        finally:
            torch.set_num_threads(threads)
            # every worker's reply is read, failed or not, so the next call's replies are its own
            replies = [_reply(proc, conn) for proc, conn in zip(self._procs[: n - 1], self._conns[: n - 1])]
        for proc, (status, result) in zip(self._procs, replies):
            if status != "ok":
                raise RuntimeError(f"generation worker {proc.pid} failed:\n{result}")
            outputs.append(result)
        order = [(i % n, i // n) for i in range(len(prompts))]  # (shard, row in it) of each row
        return GenerationOutput(
            tokens=[outputs[s].tokens[r] for s, r in order],
            logprobs=[outputs[s].logprobs[r] for s, r in order],
            finish_reasons=[outputs[s].finish_reasons[r] for s, r in order],
        )


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
