"""python -m bench.lightning --out bench/results  (on a CUDA machine; fla carried as a wheel)

Lightning attention on one GPU, bf16, B=1, H=64, D=128, in one run:
1. a small sweep of the kernel's tile settings at 64K tokens (forward and forward + backward); the
   best is kept for the rest of the run, so the settings timed are the settings checked.
2. bf16 correctness at real sizes: our Triton kernel (outputs, final states, every gradient,
   packed variable lengths, initial states) and fla's ``chunk_simple_gla`` against an fp64
   reference on the same bf16-rounded inputs; decode steps against the fp64 recurrence.
3. the speed table: ours, fla ``chunk_simple_gla(q, k, v, g_gamma=-decay, scale=1.0)`` and PyTorch
   SDPA causal attention, forward and forward + backward, 4K to 1M tokens, with tokens/s and the
   fraction of the memory roofline (each tensor read or written once, at the measured copy rate).
4. one decode step for a batch of 64 sequences, ours and fla's ``fused_recurrent_simple_gla``.
Prints tables and writes them to ``OUT/lightning.md``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

import kernels.lightning.chunk as chunk_mod
from kernels import lightning_attn, lightning_decode
from kernels.lightning.naive import naive_chunk_lightning_attn, naive_recurrent_lightning_attn

H, D = 64, 128
# (chunk, BV, warps, stages, waves) tried by the sweep
SWEEP = [(64, 64, 4, 3, 1), (64, 64, 4, 2, 1), (64, 64, 4, 2, 2), (64, 32, 4, 3, 1), (64, 32, 4, 2, 2),
         (64, 128, 8, 2, 1), (64, 128, 8, 2, 2)]
LINES: list[str] = []


def say(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def minimax_decay(H: int, layer: int = 0, n_layers: int = 80) -> torch.Tensor:
    """Per-head decay rate s of MiniMax layer ``layer`` (BRIEF section 1)."""
    slope = torch.tensor([2 ** (-8 * (h + 1) / H) for h in range(H)])
    return slope * (1 - layer / (n_layers - 1 + 1e-5) + 1e-5)


def rel(a, b) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def bench_ms(fn, grad_to_none=None, rep=200) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=rep, grad_to_none=grad_to_none, return_mode="median")


def ceilings():
    x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    y = torch.empty_like(x)
    ms = bench_ms(lambda: y.copy_(x))
    bw = 2 * x.numel() / ms / 1e9  # TB/s, bytes read + written
    del x, y
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    ms = bench_ms(lambda: a @ b)
    tflops = 2 * 8192**3 / ms / 1e9
    return bw, tflops


def fla_ops():
    try:
        from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla
    except ImportError as e:  # the comparison is the point; say so loudly but keep our numbers
        say(f"fla not importable ({e}); its columns are empty")
        return None, None
    return chunk_simple_gla, fused_recurrent_simple_gla


def correctness(fla_chunk, fla_rec, decode=True):
    say("## bf16 correctness against fp64 (relative Frobenius error; tolerance 1e-2)")
    say("")
    say("| case | o | final state | dq | dk | dv | dh0 |")
    say("|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    dev = "cuda"
    Hc = 16
    decay = minimax_decay(Hc).to(dev)
    worst = 0.0
    cases = [("T=4099, h0, segments", [4099], 1024), ("T=4099, h0, one segment", [4099], 1 << 30),
             ("varlen 1+1000+3+2048+47, h0", [1, 1000, 3, 2048, 47], 1024)]
    default_min_segment = chunk_mod.MIN_SEGMENT
    for name, lens, min_segment in cases:
        chunk_mod.MIN_SEGMENT = min_segment
        T = sum(lens)
        cu = torch.tensor([0] + list(torch.tensor(lens).cumsum(0)), dtype=torch.int32, device=dev)
        q, k, v = (torch.randn(1, T, Hc, D, device=dev).mul(0.1).bfloat16().requires_grad_() for _ in range(3))
        h0 = torch.randn(len(lens), Hc, D, D, device=dev).mul(0.1).requires_grad_()
        o, ht = lightning_attn(q, k, v, decay, h0, True, cu if len(lens) > 1 else None, backend="triton")
        do = torch.randn_like(o)
        dht = torch.randn_like(ht).mul(0.1)
        ((o.float() * do.float()).sum() + (ht * dht).sum()).backward()
        got = [o, ht, q.grad, k.grad, v.grad, h0.grad]
        ref_o, ref_ht, ref_g = [], [], [[], [], [], []]
        for i, (bos, eos) in enumerate(zip(cu[:-1].tolist(), cu[1:].tolist())):
            x64 = [x.detach()[:, bos:eos].double().requires_grad_() for x in (q, k, v)]
            s64 = h0.detach()[i : i + 1].double().requires_grad_()
            ro, rht = naive_chunk_lightning_attn(*x64, decay.double(), s64)
            ((ro * do[:, bos:eos].double()).sum() + (rht * dht[i : i + 1].double()).sum()).backward()
            ref_o.append(ro)
            ref_ht.append(rht)
            for lst, x in zip(ref_g, x64 + [s64]):
                lst.append(x.grad)
        ref = [torch.cat(ref_o, 1), torch.cat(ref_ht)] + [torch.cat(g, 1 if j < 3 else 0) for j, g in enumerate(ref_g)]
        errs = [rel(a, b) for a, b in zip(got, ref)]
        worst = max(worst, *errs)
        say(f"| ours, {name} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")
        if fla_chunk is not None and name == cases[0][0]:
            qf, kf, vf = (x.detach().clone().requires_grad_() for x in (q, k, v))
            h0f = h0.detach().clone().requires_grad_()
            of, htf = fla_chunk(qf, kf, vf, g_gamma=-decay, scale=1.0, initial_state=h0f, output_final_state=True)
            ((of.float() * do.float()).sum() + (htf.float() * dht).sum()).backward()
            errs = [rel(a, b) for a, b in zip([of, htf, qf.grad, kf.grad, vf.grad, h0f.grad], ref)]
            say(f"| fla chunk_simple_gla, {name} | " + " | ".join(f"{e:.1e}" for e in errs) + " |")
    chunk_mod.MIN_SEGMENT = default_min_segment
    # The fp64 chunked reference is itself checked against the token-by-token recurrence.
    x = [t[:, :300].detach().double() for t in (q, k, v)]
    a, sa = naive_chunk_lightning_attn(*x, decay.double())
    b, sb = naive_recurrent_lightning_attn(*x, decay.double())
    say(f"\nfp64 chunked reference vs fp64 recurrence (300 tokens): o {rel(a, b):.1e}, state {rel(sa, sb):.1e}")
    if decode:
        worst = max(worst, decode_correctness(decay))
    say(f"\n**bf16 correctness: worst error {worst:.1e} -> {'PASS' if worst < 1e-2 else 'FAIL'}**\n")
    return worst < 1e-2


def decode_correctness(decay):
    """Decode: 64 sequences, 8 steps after a 1000-token prefill, bf16 inputs, fp32 state."""
    dev, Hc, B = "cuda", decay.numel(), 64
    qd, kd, vd = (torch.randn(B, 1008, Hc, D, device=dev).mul(0.1).bfloat16() for _ in range(3))
    _, state = lightning_attn(qd[:, :1000], kd[:, :1000], vd[:, :1000], decay, None, True, backend="triton")
    outs = []
    for t in range(1000, 1008):
        o_t, state = lightning_decode(qd[:, t], kd[:, t], vd[:, t], state, decay, backend="triton")
        outs.append(o_t)
    ro, rs = naive_recurrent_lightning_attn(qd.double(), kd.double(), vd.double(), decay.double())
    e_o, e_s = rel(torch.stack(outs, 1), ro[:, 1000:]), rel(state, rs)
    say(f"decode, 64 sequences, 1000-token prefill + 8 steps: o {e_o:.1e}, state {e_s:.1e}")
    return max(e_o, e_s)


def make_inputs(T, requires_grad=False):
    torch.manual_seed(T)
    xs = [torch.randn(1, T, H, D, device="cuda", dtype=torch.bfloat16).mul_(0.1) for _ in range(3)]
    return [x.requires_grad_(requires_grad) for x in xs]


def time_ours(T, decay, backward, chunk_size=64):
    q, k, v = make_inputs(T, backward)
    f = lambda: chunk_mod.chunk_lightning_attn(q, k, v, decay, chunk_size=chunk_size)[0]  # noqa: E731
    rep = 200 if T <= 65536 else 600
    if not backward:
        with torch.no_grad():
            return bench_ms(f, rep=rep)
    do = torch.randn_like(q)
    return bench_ms(lambda: f().backward(do), grad_to_none=[q, k, v], rep=rep)


def time_fla(fla_chunk, T, decay, backward):
    q, k, v = make_inputs(T, backward)
    f = lambda: fla_chunk(q, k, v, g_gamma=-decay, scale=1.0)[0]  # noqa: E731
    rep = 200 if T <= 65536 else 600
    if not backward:
        with torch.no_grad():
            return bench_ms(f, rep=rep)
    do = torch.randn_like(q)
    return bench_ms(lambda: f().backward(do), grad_to_none=[q, k, v], rep=rep)


def time_sdpa(T, backward):
    q, k, v = (x.transpose(1, 2) for x in make_inputs(T, False))  # [1, H, T, D]
    q, k, v = (x.contiguous().requires_grad_(backward) for x in (q, k, v))
    f = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    if not backward:
        with torch.no_grad():
            return bench_ms(f, rep=300)
    do = torch.randn_like(q)
    return bench_ms(lambda: f().backward(do), grad_to_none=[q, k, v], rep=300)


def sweep(decay, settings):
    """Tile settings, each for both passes; the forward keeps the best at 1M tokens, the backward
    the best (fwd + bwd) - fwd at 64K."""
    say("## Tile sweep (ms, median)")
    say("")
    say("| chunk | BV | warps | stages | waves (programs per SM) | forward 64K | forward 1M | fwd + bwd 64K |")
    say("|---|---|---|---|---|---|---|---|")
    best_f = best_b = None
    for C, BV, w, s, waves in settings:
        cfg = dict(BV=BV, num_warps=w, num_stages=s, waves=waves)
        chunk_mod.CONFIG.update(BT=C, **cfg)
        chunk_mod.BWD_CONFIG.update(cfg)
        try:
            fwd = time_ours(65536, decay, False, C)
            fwd_1m = time_ours(1 << 20, decay, False, C)
            fb = time_ours(65536, decay, True, C)
        except Exception as e:  # a tile that does not fit (registers, shared memory) is reported, not fatal
            say(f"| {C} | {BV} | {w} | {s} | {waves} | failed: {type(e).__name__} | | |")
            continue
        say(f"| {C} | {BV} | {w} | {s} | {waves} | {fwd:.3f} | {fwd_1m:.2f} | {fb:.3f} |")
        if best_f is None or fwd_1m < best_f[0]:
            best_f = (fwd_1m, C, cfg)
        if best_b is None or fb - fwd < best_b[0]:
            best_b = (fb - fwd, C, cfg)
        torch.cuda.empty_cache()
    chunk_mod.CONFIG.update(BT=best_f[1], **best_f[2])
    chunk_mod.BWD_CONFIG.update(best_b[2])
    say(f"\nchosen: forward chunk {best_f[1]}, {best_f[2]}; backward {best_b[2]}\n")
    return best_f[1]


def speed(fla_chunk, decay, bw, tflops, C, sdpa):
    say("## Speed, bf16, B=1, H=64, D=128 (ms, median of do_bench)")
    say("")
    say("| T | ours fwd | fla fwd | SDPA fwd | ours fwd+bwd | fla fwd+bwd | SDPA fwd+bwd | ours fwd Mtok/s | fwd roofline | ours fwd roofline frac | fwd+bwd roofline frac |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for T in [4096, 16384, 65536, 262144, 1048576]:
        unit = T * H * D * 2  # bytes of one [1, T, H, D] bf16 tensor
        # forward: q, k, v read + o written; flops: 4 products of C x D x D per chunk and value block
        fwd_floor = max(4 * unit / bw / 1e9, (2 * T * H * D * (C + C + 2 * D)) / tflops / 1e9)
        bwd_floor = 11 * unit / bw / 1e9  # forward 4 + backward (q, k, v, do read; dq, dk, dv written) 7
        o_f = time_ours(T, decay, False, C)
        f_f = time_fla(fla_chunk, T, decay, False) if fla_chunk else math.nan
        s_f = time_sdpa(T, False) if sdpa and T <= 65536 else math.nan
        big = T > 262144  # forward + backward at 1M tokens needs ~140 GB with fla's states
        o_b = time_ours(T, decay, True, C) if not big else math.nan
        f_b = time_fla(fla_chunk, T, decay, True) if (fla_chunk and not big) else math.nan
        s_b = time_sdpa(T, True) if sdpa and T <= 65536 else math.nan
        torch.cuda.empty_cache()
        rows.append((T, o_f))
        say(
            f"| {T // 1024}K | {o_f:.3f} | {f_f:.3f} | {s_f:.2f} | {o_b:.3f} | {f_b:.3f} | {s_b:.2f} | "
            f"{T / o_f / 1e3:.0f} | {fwd_floor:.3f} | {fwd_floor / o_f:.2f} | {bwd_floor / o_b:.2f} |"
        )
    tps = [T / ms for T, ms in rows]
    say(f"\ntokens/s spread 4K..1M: min/max = {min(tps) / max(tps):.3f} (target >= 0.85)")
    say("SDPA past 64K is left out (2.2 s forward at 256K, BRIEF section 5).\n")


def decode_speed(fla_rec, decay, bw):
    say("## Decode step, batch 64, H=64, D=128, fp32 state (one layer)")
    say("")
    B = 64
    torch.manual_seed(1)
    q, k, v = (torch.randn(B, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    state = torch.randn(B, H, D, D, device="cuda")
    ours = bench_ms(lambda: lightning_decode(q, k, v, state, decay, backend="triton"), rep=300)
    floor = 2 * state.numel() * 4 / bw / 1e9
    fla = math.nan
    if fla_rec is not None:
        qf, kf, vf = (x[:, None] for x in (q, k, v))
        fla = bench_ms(
            lambda: fla_rec(qf, kf, vf, g_gamma=-decay, scale=1.0, initial_state=state, output_final_state=True),
            rep=300,
        )
    say("| ours ms | fla fused_recurrent ms | floor ms (state read + written) | ours roofline frac |")
    say("|---|---|---|---|")
    say(f"| {ours:.4f} | {fla:.4f} | {floor:.4f} | {floor / ours:.2f} |\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--skip-sweep", action="store_true", help="use the CONFIG in kernels/lightning/chunk.py")
    ap.add_argument("--settings", default=",".join(map(str, range(len(SWEEP)))), help="indices into SWEEP to try")
    ap.add_argument("--no-baselines", dest="baselines", action="store_false", help="skip fla and SDPA")
    ap.add_argument("--no-decode", dest="decode", action="store_false", help="skip the decode check and timing")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say(f"# Lightning attention on {torch.cuda.get_device_name()} (torch {torch.__version__}, triton {triton.__version__})")
    bw, tflops = ceilings()
    say(f"\nceilings measured: copy {bw:.2f} TB/s (read + write), bf16 matmul 8192^3 {tflops:.0f} TFLOP/s\n")
    fla_chunk, fla_rec = fla_ops() if args.baselines else (None, None)
    if not args.baselines:
        say("Baselines (fla, SDPA) not run this time (--no-baselines): their cells are nan.\n")
    decay = minimax_decay(H).cuda()
    C = 64 if args.skip_sweep else sweep(decay, [SWEEP[int(i)] for i in args.settings.split(",")])
    ok = correctness(fla_chunk, fla_rec, args.decode)
    speed(fla_chunk, decay, bw, tflops, C, args.baselines)
    if args.decode:
        decode_speed(fla_rec, decay, bw)
    else:
        say("Decode (unchanged by this run's kernels) not run this time (--no-decode).\n")
    say(f"total {time.time() - t0:.0f} s")
    (args.out / "lightning.md").write_text("\n".join(LINES) + "\n")
    if not ok:
        raise SystemExit("bf16 correctness FAILED")


if __name__ == "__main__":
    main()
