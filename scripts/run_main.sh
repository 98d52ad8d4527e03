#!/usr/bin/env bash
# Set up the venv if needed and run the main job: the quickstart policy search on the
# embedded MNIST digits. Results go to ./mlflow.db (see `autoaug compare`, `autoaug ui`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/autoaug search experiments/quickstart.yaml "$@"
