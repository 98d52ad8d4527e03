"""autoaug: search data-augmentation policies and train with the winner."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off stderr

from .policy import Policy, PolicyError, Step, builtin

__version__ = "0.1.0"
__all__ = ["Policy", "PolicyError", "Step", "load_policy", "__version__"]

_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


def load_policy(source, tracking_uri: str | None = None) -> Policy:
    """A Policy from a JSON file path, a built-in name, or an MLflow URI.

    Examples: ``load_policy("policy.json")``, ``load_policy("autoaugment-cifar10+standard+cutout")``,
    ``load_policy("runs:/<run_id>/policy.json")``.

    Args:
        source: a Policy (returned as it is); a path (``str`` or ``os.PathLike``) to a
            policy JSON file; a built-in spec as ``builtin`` takes; or an MLflow artifact
            URI (``runs:/``, ``models:/``, ``mlflow-artifacts:/``).
        tracking_uri: the MLflow store of a ``runs:/`` URI (default: MLflow's default);
            a store that does not exist is an error, never created.

    Returns:
        The Policy.

    Raises:
        PolicyError: the file cannot be read or is not a valid policy (the message names
            the file), or the name is not a built-in.
        autoaug.tracking.TrackingError: the MLflow artifact cannot be read.

    >>> import os, tempfile
    >>> policy = load_policy("autoaugment-cifar10+standard+cutout")
    >>> policy.name, len(policy.sub_policies), policy.ranges
    ('autoaugment-cifar10+standard+cutout', 25, 'aa')
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     policy.save(os.path.join(folder, "policy.json"))
    ...     load_policy(os.path.join(folder, "policy.json")) == policy
    True
    >>> load_policy("no/such/policy.json")
    Traceback (most recent call last):
    ...
    autoaug.policy.PolicyError: cannot read policy file no/such/policy.json: No such file or directory
    """
    if isinstance(source, Policy):
        return source
    source = os.fspath(source)
    if source.startswith(_URI_SCHEMES):
        from . import tracking
        return Policy.from_json(tracking.read_artifact_text(source, tracking_uri))
    if source.endswith(".json") or os.path.sep in source or os.path.exists(source):
        try:
            with open(source) as f:
                text = f.read()
        except OSError as e:
            raise PolicyError(f"cannot read policy file {source}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise PolicyError(f"{source} is not a text file (a policy file is JSON)") from None
        try:
            return Policy.from_json(text)
        except PolicyError as e:
            raise PolicyError(f"{source}: {e}") from None
    return builtin(source)
