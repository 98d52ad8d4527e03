#!/usr/bin/env bash
# Build (or reuse) .venv-bench: the environment for scripts/bench_throughput.py with its peers.
#
# Model Garden (tf-models-official) pins an older TensorFlow and pulls in a large tree of
# dependencies, so it never goes into the project's .venv. This venv gets TensorFlow 2.21 and
# Keras 3 (the versions autoaug runs on), tf-keras 2.21 (Model Garden's Keras 2), Model Garden
# itself without its dependency pins, and autoaug (editable, without its search/tracking deps:
# the benchmark imports only autoaug.policy/ops/augment). Idempotent: a stamp records what was
# installed, and a rerun with an unchanged script and pyproject.toml only re-checks the imports.
# BENCH_VENV=path builds it elsewhere; PYTHON=python3.11 picks the interpreter (3.10-3.12).
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-.venv-bench}

TF_SPEC='tensorflow==2.21.*'
TFK_SPEC='tf-keras==2.21.*'
TMO_SPEC='tf-models-official==2.20.0'
# What importing `official.vision.ops.augment` needs beyond TensorFlow and tf-keras
# (`official.vision/__init__` pulls in official.core, its input reader and the COCO evaluators).
TMO_DEPS=(gin-config pyyaml six tensorflow-datasets scipy pycocotools opencv-python-headless matplotlib)

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
stamp="$VENV/.bench-installed"
want=$( (sha256sum "$SELF"; sha256sum pyproject.toml) | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/pip" install -q "$TF_SPEC" 'keras>=3.0' "$TFK_SPEC" numpy pillow "${TMO_DEPS[@]}"
  # --no-deps: Model Garden's metadata pins tensorflow~=2.20 and tensorflow-text, which would
  # downgrade TensorFlow; the augment module runs on 2.21 without them.
  "$VENV/bin/pip" install -q --no-deps "$TMO_SPEC"
  "$VENV/bin/pip" install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# Fail here, with one line, rather than in the middle of a benchmark.
"$VENV/bin/python" - <<'PY'
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf, keras, tf_keras
from official.vision.ops import augment  # noqa: F401
import autoaug
import sys
print(f"{sys.prefix}: tensorflow {tf.__version__}, keras {keras.__version__}, "
      f"tf-keras {tf_keras.__version__}, Model Garden augment OK, autoaug {autoaug.__version__}")
PY
