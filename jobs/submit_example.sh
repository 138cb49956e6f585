#!/usr/bin/env bash
# Submit the RLAIF loop to a running Ray cluster with the plain Ray CLI.
# RAY_ADDRESS: the dashboard address, e.g. http://127.0.0.1:8265.
# RUN_DIR: an absolute path every node mounts, or a URI (s3://bucket/runs/x, gs://...) with
# credentials in each node's environment (a job's working dir is temporary).
# Ray 2.60 uses token auth: RAY_AUTH_MODE=token (the token is in ~/.ray/auth_token).
set -euo pipefail
CONFIG=${1:-conf/default.yaml}
shift || true
RUN_DIR=${RUN_DIR:?set RUN_DIR to an absolute shared path or a URI}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
ray job submit --address "${RAY_ADDRESS:?set RAY_ADDRESS}" --working-dir . \
  --runtime-env-json '{"excludes": [".git", ".venv", "runs", ".cache"]}' \
  -- python -m rlaif_ray.job_entry run "$CONFIG" "run.dir=$RUN_DIR" "$@"
