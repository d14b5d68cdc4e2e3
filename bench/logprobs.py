"""python -m bench.logprobs --out bench/results  (on a CUDA machine)

Per-token log-probabilities and entropy through the LM head at M1's vocabulary (V=200064,
d=6144, N=16K tokens, bf16 hidden states and weight), forward + backward, one GPU:
- a sweep of the fused kernel's tiles (forward and backward timed apart), the best kept;
- ours: ``kernels.fused_logprobs`` (fp32 logits, never materialized);
- materialized fp32 (``kernels.naive_logprobs``: upcast, a true fp32 matmul, fp32 log-softmax);
- materialized bf16 matmul + fp32 log-softmax (a bf16 head: what the FP32 head replaces).
Time (median), peak memory above the inputs, and agreement with the fp32 path. Writes
``OUT/logprobs.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import triton

import kernels.logprobs.fused_linear as fused_linear
from kernels import fused_logprobs, naive_logprobs

# (BM, BN, BK, GROUP_M, warps, stages) tried by the sweep, for the forward and the backward kernel
SWEEP = [(128, 256, 64, 16, 8, 3), (128, 256, 64, 8, 8, 3), (128, 128, 64, 16, 8, 4), (256, 128, 64, 16, 8, 3)]
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def bf16_head(hidden, weight, targets):
    logp = torch.log_softmax((hidden @ weight.t()).float(), dim=-1)  # [N, V] from bf16 logits
    return logp.gather(-1, targets[:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def correctness():
    """Moderate size against fp64: logits of bf16 inputs in fp64, gradients too."""
    torch.manual_seed(0)
    N, d, V = 1000, 1024, 50021
    h = (torch.randn(N, d, device="cuda") * 0.5).bfloat16().requires_grad_()
    w = (torch.randn(V, d, device="cuda") * 0.05).bfloat16().requires_grad_()
    t = torch.randint(0, V, (N,), device="cuda")
    g_lp, g_ent = torch.randn(N, device="cuda"), torch.randn(N, device="cuda")
    lp, ent = fused_logprobs(h, w, t, backend="triton")
    ((lp * g_lp).sum() + (ent * g_ent).sum()).backward()
    h64, w64 = (x.detach().double().requires_grad_() for x in (h, w))
    logp = torch.log_softmax(h64 @ w64.t(), -1)
    rlp, rent = logp.gather(-1, t[:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)
    ((rlp * g_lp.double()).sum() + (rent * g_ent.double()).sum()).backward()
    rel = lambda a, b: ((a.double() - b).norm() / b.norm()).item()  # noqa: E731
    errs = {
        "logprob max abs": (lp.double() - rlp).abs().max().item(),
        "entropy max abs": (ent.double() - rent).abs().max().item(),
        "d hidden rel": rel(h.grad, h64.grad),
        "d weight rel": rel(w.grad, w64.grad),
    }
    say("## bf16 inputs against fp64 (N=1000, d=1024, V=50021)")
    say("")
    for k, e in errs.items():
        say(f"- {k}: {e:.2e}")
    ok = errs["logprob max abs"] < 1e-4 and errs["entropy max abs"] < 1e-4 and errs["d hidden rel"] < 1e-2 and errs["d weight rel"] < 1e-2
    say(f"\n**{'PASS' if ok else 'FAIL'}** (tolerances: 1e-4 absolute on log-probs and entropy, 1e-2 relative on bf16 gradients)\n")
    return ok


def median_ms(fn, reps):
    fn()  # compile and warm up
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def sweep(h, w, t, settings):
    """Tile settings of the forward and backward kernels, each timed on its own (ms, median of 3)."""
    say("## Tile sweep (ms, median of 3; forward: one GEMM, backward: recompute + two cuBLAS GEMMs)")
    say("")
    say("| BM | BN | BK | GROUP_M | warps | stages | forward | backward |")
    say("|---|---|---|---|---|---|---|---|")
    N = h.shape[0]
    g = torch.randn(N, device="cuda")
    best_f = best_b = None
    for BM, BN, BK, GM, nw, ns in settings:
        cfg = dict(BM=BM, BN=BN, BK=BK, GROUP_M=GM, num_warps=nw, num_stages=ns)
        fused_linear.FWD_CONFIG.update(cfg)
        fused_linear.BWD_CONFIG.update(cfg)
        try:
            with torch.no_grad():
                _, ent, lse = fused_linear._fwd(h, w, t)
                fwd = median_ms(lambda: fused_linear._fwd(h, w, t), 3)
                bwd = median_ms(lambda: fused_linear._bwd(h, w, t, lse, ent, g, g, True), 3)
        except Exception as e:  # a tile that does not fit (registers, shared memory) is reported, not fatal
            say(f"| {BM} | {BN} | {BK} | {GM} | {nw} | {ns} | failed: {type(e).__name__} | |")
            continue
        say(f"| {BM} | {BN} | {BK} | {GM} | {nw} | {ns} | {fwd:.1f} | {bwd:.1f} |")
        if best_f is None or fwd < best_f[0]:
            best_f = (fwd, cfg)
        if best_b is None or bwd < best_b[0]:
            best_b = (bwd, cfg)
    fused_linear.FWD_CONFIG.update(best_f[1])
    fused_linear.BWD_CONFIG.update(best_b[1])
    say(f"\nchosen: forward {best_f[1]}, backward {best_b[1]}\n")


def measure(fn, h, w, t, reps):
    """Median ms of forward + backward and the peak memory it allocates above the inputs (GiB)."""
    g = torch.randn(h.shape[0], device="cuda")

    def step():
        lp, ent = fn(h, w, t)
        (lp * g + ent * g).sum().backward()

    step()  # compile and warm up
    h.grad = w.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
        h.grad = w.grad = None
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return sorted(times)[len(times) // 2], peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--settings", default=",".join(map(str, range(len(SWEEP)))), help="indices into SWEEP to try")
    ap.add_argument("--no-baselines", dest="baselines", action="store_false",
                    help="time only ours (the materialized paths still check it at full size)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say(f"# Fused log-probabilities on {torch.cuda.get_device_name()} (torch {torch.__version__}, triton {triton.__version__})\n")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    tflops = 2 * 8192**3 / triton.testing.do_bench(lambda: a @ b, return_mode="median") / 1e9
    del a, b
    say(f"ceiling measured: bf16 matmul 8192^3 {tflops:.0f} TFLOP/s\n")
    N, d, V = args.tokens, 6144, 200064
    torch.manual_seed(0)
    h = (torch.randn(N, d, device="cuda") * 0.5).bfloat16().requires_grad_()
    w = (torch.randn(V, d, device="cuda") * 0.02).bfloat16().requires_grad_()
    t = torch.randint(0, V, (N,), device="cuda")
    sweep(h, w, t, [SWEEP[int(i)] for i in args.settings.split(",")])
    torch.cuda.empty_cache()
    ok = correctness()
    with torch.no_grad():
        ref_lp, ref_ent = naive_logprobs(h, w, t)
        lp, ent = fused_logprobs(h, w, t, backend="triton")
        b_lp, _ = bf16_head(h, w, t)
    say(f"## N={N}, d={d}, V={V}, forward + backward")
    say("")
    say(f"ours vs materialized fp32: log-prob max abs diff {(lp - ref_lp).abs().max().item():.2e}, "
        f"entropy {(ent - ref_ent).abs().max().item():.2e}; bf16 head vs fp32: log-prob max abs diff "
        f"{(b_lp - ref_lp).abs().max().item():.2e}\n")
    del ref_lp, ref_ent, lp, ent, b_lp
    torch.cuda.empty_cache()
    say("| path | ms (median) | peak memory above inputs, GiB |")
    say("|---|---|---|")
    results = {}
    paths = [("ours, fused fp32 logits (Triton)", lambda *a: fused_logprobs(*a, backend="triton"), 7)]
    if args.baselines:
        paths += [("materialized fp32 (true fp32 matmul)", naive_logprobs, 3),
                  ("materialized bf16 matmul + fp32 log-softmax", bf16_head, 7)]
    for name, fn, reps in paths:
        ms, peak = measure(fn, h, w, t, reps)
        results[name] = (ms, peak)
        torch.cuda.empty_cache()
        say(f"| {name} | {ms:.1f} | {peak:.2f} |")
    ours = results["ours, fused fp32 logits (Triton)"]
    gemm_flop = 4 * 2 * N * d * V  # forward, recompute, two gradient products
    if args.baselines:
        fp32 = results["materialized fp32 (true fp32 matmul)"]
        say(f"\nours / materialized fp32: time {ours[0] / fp32[0]:.3f}, peak memory {ours[1] / fp32[1]:.3f} "
            f"(targets: <= 1, <= 0.25).")
    else:
        say("\nMaterialized paths not timed this time (--no-baselines).")
    say(f"Four GEMMs at 700 TFLOP/s: {gemm_flop / 700e9:.0f} ms; at the measured {tflops:.0f} TFLOP/s: "
        f"{gemm_flop / tflops / 1e9:.0f} ms; ours runs at {gemm_flop / ours[0] / 1e9:.0f} TFLOP/s.")
    say(f"total {time.time() - t0:.0f} s")
    (args.out / "logprobs.md").write_text("\n".join(LINES) + "\n")
    if not ok:
        raise SystemExit("bf16 correctness FAILED")


if __name__ == "__main__":
    main()
