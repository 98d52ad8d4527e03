"""autoaug: search data-augmentation policies and train with the winner."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off stderr

from .policy import Policy, PolicyError, Step, builtin

__version__ = "0.1.0"
__all__ = ["Policy", "PolicyError", "Step", "load_policy", "__version__"]

_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def load_policy(source) -> Policy:
    """A Policy from a JSON file path, a built-in name, or an MLflow URI.

    Examples: ``load_policy("policy.json")``, ``load_policy("autoaugment-cifar10+standard+cutout")``,
    ``load_policy("runs:/<run_id>/policy.json")``.
    """
    if isinstance(source, Policy):
        return source
    source = os.fspath(source)
    if source.startswith(_URI_SCHEMES):
        from . import tracking
        return Policy.from_json(tracking.read_artifact_text(source))
    if source.endswith(".json") or os.path.sep in source or os.path.exists(source):
        try:
            with open(source) as f:
                text = f.read()
        except OSError as e:
            raise PolicyError(f"cannot read policy file {source}: {e.strerror}") from None
        try:
            return Policy.from_json(text)
        except PolicyError as e:
            raise PolicyError(f"{source}: {e}") from None
    return builtin(source)
