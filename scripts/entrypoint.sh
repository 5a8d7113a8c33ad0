#!/usr/bin/env bash
# Container start command: one image for RunPod serverless and for a local API.
#
# WORKER_MODE=auto (default): on RunPod, where the platform sets RUNPOD_WEBHOOK_GET_JOB (the same test the
#   runpod SDK uses to tell the platform from a local run), start the serverless worker; anywhere else serve
#   RunPod's local API on ${RP_API_HOST:-0.0.0.0}:${RP_API_PORT:-8000}, so `docker run -p 8000:8000 <image>` works.
# WORKER_MODE=serverless: always `python handler.py` (off RunPod the SDK then runs test_input.json once).
# WORKER_MODE=api: always serve the local API.
# Extra arguments are passed to handler.py (e.g. --rp_log_level DEBUG).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python}"
mode="${WORKER_MODE:-auto}"
if [[ "$mode" == auto ]]; then
  if [[ -n "${RUNPOD_WEBHOOK_GET_JOB:-}" ]]; then mode=serverless; else mode=api; fi
fi

case "$mode" in
  serverless)
    exec "$PYTHON" -u handler.py "$@" ;;
  api)
    exec "$PYTHON" -u handler.py --rp_serve_api \
      --rp_api_host "${RP_API_HOST:-0.0.0.0}" --rp_api_port "${RP_API_PORT:-8000}" "$@" ;;
  *)
    echo "entrypoint: WORKER_MODE must be auto, serverless or api, got '$mode'" >&2
    exit 2 ;;
esac
