#!/usr/bin/env bash
# One-GPU DeepSpeed ZeRO-2 run of the RL loop on the tiny preset (issue #7), on the lent H200:
#   [SFT_STEPS=400 RL_STEPS=20] bash bench/deepspeed_rl_gpu.sh   # via the device tool, carrying .whl
# The GPU image has no deepspeed: its wheel (built here with `DS_BUILD_OPS=0 pip wheel --no-deps
# deepspeed==0.19.8`) and pure-python deps travel in .whl/. No mlflow there: metrics go to
# metrics.jsonl only. Writes $OUT/rl_deepspeed_gpu.txt (the last metrics and timings).
set -euo pipefail
OUT=${OUT:-runs/deepspeed_gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/deepspeed-*.whl .whl/hjson-*.whl .whl/py_cpuinfo-*.whl .whl/msgpack-*.whl .whl/einops-*.whl \
  .whl/pydantic-*.whl .whl/pydantic_core-*.whl .whl/annotated_types-*.whl .whl/typing_inspection-*.whl
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
work=/tmp/ds_run
rm -rf "$work"
t0=$(date +%s)
python3 -m tasks.train.sft --output "$work/sft" --set steps="${SFT_STEPS:-400}" > "$OUT/sft.log" 2>&1 || { tail -c 3000 "$OUT/sft.log"; exit 1; }
t1=$(date +%s)
RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 \
  python3 -m tasks.train.rl.train --policy "$work/sft/policy" --output "$work/rl" \
  --set algorithm=cispo --set train_engine=deepspeed --set steps="${RL_STEPS:-20}" > "$OUT/rl.log" 2>&1 || { tail -c 3000 "$OUT/rl.log"; exit 1; }
t2=$(date +%s)
{
  echo "# DeepSpeed ZeRO-2, one H200, tiny preset, params.yaml rl/sft sections (SFT ${SFT_STEPS:-400} steps, CISPO ${RL_STEPS:-20} steps)"
  echo "sft_seconds $((t1 - t0))"
  echo "rl_seconds $((t2 - t1))"
  python3 - "$work/rl/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
evals = [(r["step"], r["eval/accuracy"]) for r in rows if "eval/accuracy" in r]
print("eval_accuracy_by_step", evals)
last = rows[-1]
for k in sorted(last):
    if k.startswith(("perf/", "health/", "train/", "length/")):
        print(k, round(last[k], 6))
PY
} | tee "$OUT/rl_deepspeed_gpu.txt"
