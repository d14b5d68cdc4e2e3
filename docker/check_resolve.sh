#!/usr/bin/env bash
# Does the GPU image's install set resolve? No Docker engine here, so pip resolves it without
# installing (metadata only; the image's Python is 3.12, this is the project venv's):
#   bash docker/check_resolve.sh > bench/results/vllm_docker_resolve.txt
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
.venv/bin/pip install --quiet --dry-run --ignore-installed --report "$report" -c docker/constraints-gpu.txt '.[gpu]'
echo "# pip install --dry-run -c docker/constraints-gpu.txt '.[gpu]' ($(.venv/bin/python --version), $(date -u +%F))"
.venv/bin/python - "$report" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
pins = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}
print(f"resolved: {len(pins)} distributions")
for name in ("torch", "vllm", "transformers", "prefect", "fastapi", "mlflow", "dvc", "deepspeed", "triton", "pydantic"):
    print(f"{name:>14} {pins.get(name, 'MISSING')}")
PY
rm -f "$report"
