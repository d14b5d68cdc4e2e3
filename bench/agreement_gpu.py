"""python -m bench.agreement_gpu --output bench/results --seconds 75  (on a CUDA machine)

Figure 3 on trained weights at GPU scale: the ``small`` preset (M1 architecture, 16 layers, d=2048,
head_dim 128) trained for a fixed wall-clock budget on the shipped chat corpus
(data/tokenizer_corpus.txt; fp32 master weights, bf16 autocast, AdamW), then measured by
``tasks.train.agreement.measure_agreement`` with bf16 weights: responses sampled by the recurrent decode
path, rescored by the chunked training path, bf16 head vs FP32 head. Self-contained because the GPU
image has no mlflow/prefect for ``tasks.train.sft``. Writes ``OUT/agreement_small.json`` / ``.png``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import torch

from tasks.train.agreement import measure_agreement
from tasks.train.policy import build_policy


def dialogues(path: Path) -> list[tuple[str, str]]:
    """(question, assistant reply) pairs of the chat-formatted corpus."""
    pairs = []
    for block in path.read_text().split("<|im_start|>user\n")[1:]:
        q, _, rest = block.partition("<|im_end|>\n<|im_start|>assistant\n")
        reply = rest.split("<|im_end|>")[0]
        if q and reply:
            pairs.append((q, reply))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=75.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--preset", default="small", help="tiny: a CPU smoke run of this script")
    args = ap.parse_args()
    from model.tokenizer import train_tokenizer

    torch.manual_seed(0)
    rng = random.Random(0)
    pairs = dialogues(Path("data/tokenizer_corpus.txt"))
    held_out, train = pairs[:64], pairs[64:]
    tok_dir = Path("/tmp/agreement_tok")
    shutil.rmtree(tok_dir, ignore_errors=True)
    tok = train_tokenizer((q + " " + r for q, r in train), 2048, tok_dir)
    texts = [
        tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": r}], tokenize=False)
        for q, r in train
    ]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(dev):
        model = build_policy({"arch": "m1", "preset": args.preset}, tok)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.preset} preset: {n_params / 1e9:.2f}B parameters, vocab {len(tok)}", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
    model.train()
    t0, step, losses = time.time(), 0, []
    while time.time() - t0 < args.seconds:
        batch = rng.sample(texts, args.batch_size)
        enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)  # [B, T]
        labels = ids.masked_fill(mask == 0, -100)
        lr = args.lr * min(1.0, (step + 1) / 20)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(dev, dtype=torch.bfloat16):
            loss = model(ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 20 == 0:
            print(f"step {step} ({time.time() - t0:.0f} s): loss {sum(losses[-20:]) / 20:.3f}", flush=True)
    print(f"trained {step} steps in {time.time() - t0:.0f} s, final loss {sum(losses[-10:]) / 10:.3f}", flush=True)
    del opt
    model = model.to(torch.bfloat16)
    out = args.output / f"agreement_{args.preset}"
    summary = measure_agreement(
        model, tok, [q for q, _ in held_out], out, max_new_tokens=96, batch_size=64,
        figure=args.output / f"agreement_{args.preset}.png",
        title=f"{args.preset} preset ({n_params / 1e9:.2f}B), {step} steps on {dev}, bf16 weights",
    )
    shutil.copy(out / "agreement.json", args.output / f"agreement_{args.preset}.json")
    print(summary["heads"])


if __name__ == "__main__":
    main()
