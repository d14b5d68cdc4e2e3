#!/usr/bin/env bash
# On the H200, from the project root, after /tmp/vb holds p0, p1, p2 of ../shared/tools/vllm-h200/build.sh
# (three device calls carrying .vc0, .vc1, .vc2; see that README):
#   bash bench/vllm_h200.sh [--parts kernel,random,rl,v200k,trained,router32,speed,speed_mp] [--random-steps ...]
# Unpacks vLLM 0.23 into /tmp/vsite once, then runs bench/vllm_h200.py into $OUT.
set -euo pipefail
test -d /tmp/vsite/vllm || cat /tmp/vb/p0 /tmp/vb/p1 /tmp/vb/p2 |
  python3 -c "import sys,tarfile; tarfile.open(fileobj=sys.stdin.buffer,mode='r|xz').extractall('/tmp/vsite')"
# mlflow (skinny) and what it needs beyond the image, as wheels in .whl (see bench/results/vllm_h200.md), for the rl part
test -d /tmp/mlsite/mlflow || ! test -d .whl ||
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/mlsite .whl/*.whl
export PYTHONPATH=/tmp/vsite:/tmp/mlsite:$PWD VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/vllm_h200.py --output "${OUT:-runs/vllm_h200}" "$@"
