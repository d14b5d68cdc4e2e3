#!/usr/bin/env bash
# The deployment path end to end on one machine, state in a temp dir:
#   bash flows/deployment_smoke.sh
# starts `prefect server`, creates the process work pool m1-cpu, `prefect deploy --all` (prefect.yaml),
# starts a worker, runs `prefect deployment run m1/full-pipeline --watch`, then stops both.
set -u
cd "$(dirname "$0")/.."
PORT=${PORT:-4299}
STATE=$(mktemp -d)
export PREFECT_HOME=$STATE PREFECT_API_URL=http://127.0.0.1:$PORT/api PREFECT_SERVER_ANALYTICS_ENABLED=false
export M1_PROJECT_DIR=$PWD
PREFECT=.venv/bin/prefect
$PREFECT server start --port "$PORT" > "$STATE/server.log" 2>&1 &
SERVER=$!
WORKER=
cleanup() { kill $WORKER $SERVER 2>/dev/null; sleep 3; kill -9 $WORKER $SERVER 2>/dev/null; rm -rf "$STATE"; }
trap cleanup EXIT
for _ in $(seq 1 90); do curl -sf "http://127.0.0.1:$PORT/api/health" > /dev/null && break; sleep 2; done
$PREFECT work-pool create m1-cpu --type process --overwrite
$PREFECT --no-prompt deploy --all
$PREFECT worker start --pool m1-cpu > "$STATE/worker.log" 2>&1 &
WORKER=$!
$PREFECT deployment run m1/full-pipeline --watch
