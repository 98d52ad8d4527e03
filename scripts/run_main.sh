#!/usr/bin/env bash
# Set up the venv if needed and run the main job on the embedded dataset.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/autoaug preview --policy autoaugment-cifar10 --out out/preview.png "$@"
