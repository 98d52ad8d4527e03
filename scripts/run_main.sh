#!/usr/bin/env bash
# Set up the venv if needed and run the main job on the embedded MNIST digits: the quickstart
# policy search (baselines first, then searched policies, then a paired selection), the frozen
# winner, and its verdict on the test split against `none` and the best baseline, with 5 paired
# seeds. Results go to ./mlflow.db (see `autoaug compare`, `autoaug ui`) and runs/quickstart/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
mkdir -p runs/quickstart
.venv/bin/autoaug search experiments/quickstart.yaml "$@"
.venv/bin/autoaug best --experiment experiments/quickstart.yaml --out runs/quickstart/policy.json
echo
echo "Verdict on the test split (the search never saw it): the winner, the best baseline and none"
exec .venv/bin/autoaug evaluate experiments/quickstart.yaml --from-study --baselines best --policies none \
    --seeds 5 --csv runs/quickstart/evaluate.csv --quiet
