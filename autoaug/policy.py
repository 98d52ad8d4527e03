"""Policies as plain data: JSON in and out, validation, built-in published policies.

A ``Policy`` is an ordered list of *stages*. The stage ``"policy"`` stands for the
sub-policies: each image draws one sub-policy uniformly and runs its steps in order,
each with its own probability (AutoAugment). Any other stage is a single ``Step``
applied per image with its probability (for example the standard flip and pad-crop,
Cutout, or a batch-level MixUp/CutMix that also mixes the labels). The stage order is
part of the policy.

Per-class policies: ``class_policies`` holds groups of classes with their own
sub-policies (``ClassPolicy``). In the "policy" stage an image whose label is in a
group's ``classes`` draws uniformly among that group's sub-policies; every other label
uses the top-level ``sub_policies`` (the default). Empty sub-policy lists (a group's or
the default) mean "no policy ops" for those images.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import numbers
import re
from dataclasses import dataclass, field

from . import opspec
from .files import atomic_write

SCHEMA_VERSION = 1
RANGES = opspec.RANGES


class PolicyError(ValueError):
    """A malformed policy; the message is one line that names the problem."""


@dataclass(frozen=True)
class Step:
    op: str
    p: float = 1.0
    level: float = 0.0

    def validate(self, where: str) -> None:
        spec = opspec.OPS.get(self.op)
        if spec is None:
            raise PolicyError(f"{where}: unknown op {self.op!r} (known: {', '.join(opspec.OP_NAMES)})")
        if not isinstance(self.p, (int, float)) or not 0.0 <= self.p <= 1.0:
            raise PolicyError(f"{where}: probability {self.p!r} for {self.op} is outside [0, 1]")
        if not isinstance(self.level, (int, float)) or not 0.0 <= self.level <= opspec.MAX_LEVEL:
            raise PolicyError(
                f"{where}: level {self.level!r} for {self.op} is outside 0..{opspec.MAX_LEVEL:g}")

    def to_dict(self) -> dict:
        return {"op": self.op, "p": float(self.p), "level": float(self.level)}

    def __str__(self) -> str:
        return f"{self.op} p={self.p:g} L={self.level:g}"


def _validate_sub_policies(subs, where: str) -> None:
    """Non-empty sub-policies of valid per-image steps; `where` prefixes the message."""
    for k, sub in enumerate(subs):
        if not sub:
            raise PolicyError(f"{where}sub-policy {k} is empty")
        for i, step in enumerate(sub):
            if not isinstance(step, Step):
                raise PolicyError(f"{where}sub-policy {k} step {i}: expected a Step, got {step!r}")
            step.validate(f"{where}sub-policy {k} step {i}")
            if opspec.OPS[step.op].kind == "batch":
                raise PolicyError(
                    f"{where}sub-policy {k} step {i}: {step.op} mixes images, use it as a stage")


# Largest class id a per-class policy may name: the graph looks classes up in a dense
# vector of max(class) + 1 entries.
MAX_CLASS_ID = 1_000_000


def _check_classes(classes, where: str) -> None:
    """Class ids of one group: at least one, non-negative ints (not bool), none twice."""
    if not classes:
        raise PolicyError(f"{where}: a class group needs at least one class")
    seen = set()
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, numbers.Integral):
            raise PolicyError(f"{where}: class {c!r} is not an integer class id")
        if c < 0:
            raise PolicyError(f"{where}: class {c} is negative")
        if c > MAX_CLASS_ID:
            raise PolicyError(f"{where}: class {c} is above {MAX_CLASS_ID}")
        if c in seen:
            raise PolicyError(f"{where}: class {c} is listed twice")
        seen.add(c)


def _class_list(classes) -> str:
    return ",".join(str(c) for c in classes)


@dataclass(frozen=True)
class ClassPolicy:
    """Sub-policies for the images whose label is one of `classes`.

    An empty `sub_policies` means these classes get no policy ops.
    """
    classes: tuple[int, ...]
    sub_policies: tuple[tuple[Step, ...], ...] = ()

    def __post_init__(self):
        for name in ("classes", "sub_policies"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
                raise PolicyError(f"class group: {name} must be a list, got {value!r}")
        classes = tuple(self.classes)
        _check_classes(classes, f"class group {list(classes)!r}")
        object.__setattr__(self, "classes", tuple(int(c) for c in classes))
        object.__setattr__(self, "sub_policies", tuple(tuple(sp) for sp in self.sub_policies))
        self.validate()

    def validate(self, where: str = "") -> None:
        where = where or f"classes {_class_list(self.classes)}"
        _check_classes(self.classes, where)
        _validate_sub_policies(self.sub_policies, f"{where}: ")

    @property
    def num_steps(self) -> int:
        return max((len(sp) for sp in self.sub_policies), default=0)

    def to_dict(self) -> dict:
        return {"classes": list(self.classes),
                "sub_policies": [[s.to_dict() for s in sp] for sp in self.sub_policies]}


# Named stages that combine a policy with the reference CIFAR pipeline.
STAGES = {
    "flip": Step("FlipLR", 0.5, 0.0),
    "crop": Step("PadCrop", 1.0, 5.0),  # pad 4 px on 32 px (0.125 of the side)
    "cutout": Step("Cutout", 1.0, 8.0),  # 16 px on 32 px
}
POLICY_STAGE = "policy"


@dataclass(frozen=True)
class Policy:
    sub_policies: tuple[tuple[Step, ...], ...] = ()
    stages: tuple = (POLICY_STAGE,)
    ranges: str = "aa"
    name: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    class_policies: tuple[ClassPolicy, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "sub_policies", tuple(tuple(sp) for sp in self.sub_policies))
        object.__setattr__(self, "stages", tuple(self.stages))
        groups = self.class_policies
        if isinstance(groups, ClassPolicy) or not hasattr(groups, "__iter__"):
            raise PolicyError("class_policies must be a list of ClassPolicy groups")
        object.__setattr__(self, "class_policies", tuple(groups))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.ranges not in RANGES:
            raise PolicyError(f"ranges must be one of {RANGES}, got {self.ranges!r}")
        _validate_sub_policies(self.sub_policies, "")
        owner: dict[int, int] = {}
        for g, group in enumerate(self.class_policies):
            if not isinstance(group, ClassPolicy):
                raise PolicyError(f"class group {g}: expected a ClassPolicy, got {type(group).__name__}")
            group.validate(f"class group {g}")
            for c in group.classes:
                if c in owner:
                    raise PolicyError(f"class {c} is in class groups {owner[c]} and {g}: a class may be in one group only")
                owner[c] = g
        if self.stages.count(POLICY_STAGE) > 1:
            raise PolicyError("the 'policy' stage appears more than once")
        for i, stage in enumerate(self.stages):
            if isinstance(stage, Step):
                stage.validate(f"stage {i}")
            elif stage != POLICY_STAGE:
                raise PolicyError(f"stage {i}: expected 'policy' or a step, got {stage!r}")

    # ------------------------------------------------------------------ derived views
    @property
    def num_steps(self) -> int:
        """The longest sub-policy, over the default and every class group."""
        return max([len(sp) for sp in self.sub_policies]
                   + [g.num_steps for g in self.class_policies], default=0)

    @property
    def per_class(self) -> bool:
        """True when some classes have their own sub-policies (labels are then needed)."""
        return bool(self.class_policies)

    @property
    def has_sub_policies(self) -> bool:
        """Whether any image can draw a sub-policy (the default or a class group's)."""
        return bool(self.sub_policies) or any(g.sub_policies for g in self.class_policies)

    @property
    def uses_labels(self) -> bool:
        """True when a stage mixes labels (MixUp/CutMix)."""
        return any(isinstance(s, Step) and opspec.OPS[s.op].kind == "batch" for s in self.stages)

    @property
    def needs_labels(self) -> bool:
        """Applying this policy needs labels: it mixes them or it is per-class."""
        return self.uses_labels or self.per_class

    def structure(self) -> tuple:
        """What the augmentation graph depends on; numbers are fed to it as tensors.

        Per-class and plain policies with the same stages and step count share one structure.
        """
        subs = self.has_sub_policies
        return tuple(s.op if isinstance(s, Step) else (POLICY_STAGE, self.num_steps)
                     for s in self.stages if isinstance(s, Step) or subs)

    def with_stages(self, order) -> "Policy":
        """This policy's sub-policies with stages in `order` (names or Steps).

        Names: 'policy', 'flip', 'crop', 'cutout', or 'standard' (= flip, crop).
        """
        stages = []
        for item in order:
            if isinstance(item, Step) or item == POLICY_STAGE:
                stages.append(item)
            elif item == "standard":
                stages += [STAGES["flip"], STAGES["crop"]]
            elif item in STAGES:
                stages.append(STAGES[item])
            else:
                raise PolicyError(f"unknown stage {item!r}: use policy, flip, crop, cutout, standard")
        return Policy(self.sub_policies, tuple(stages), self.ranges, self.name, dict(self.meta),
                      class_policies=self.class_policies)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "ranges": self.ranges,
            "stages": [s.to_dict() if isinstance(s, Step) else s for s in self.stages],
            "sub_policies": [[s.to_dict() for s in sp] for sp in self.sub_policies],
        }
        if self.class_policies:  # only when present: digests of plain policies stay as they were
            d["class_policies"] = [g.to_dict() for g in self.class_policies]
        if self.meta:
            d["meta"] = self.meta
        return d

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str) -> None:
        """Write atomically: a crash never leaves half a policy file."""
        atomic_write(path, self.to_json() + "\n")

    def digest(self) -> str:
        """Short hash of the augmentation itself (name and provenance excluded)."""
        d = self.to_dict()
        d.pop("name"), d.pop("meta", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, d) -> "Policy":
        if not isinstance(d, dict):
            raise PolicyError("a policy must be a JSON object")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise PolicyError(f"unsupported schema_version {version!r} (this autoaug reads {SCHEMA_VERSION})")
        unknown = set(d) - {"schema_version", "name", "ranges", "stages", "sub_policies", "meta",
                            "class_policies"}
        if unknown:
            raise PolicyError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        sub_policies = _sub_policies_from(d.get("sub_policies", []), "")
        groups = d.get("class_policies", [])
        if not isinstance(groups, list):
            raise PolicyError("'class_policies' must be a list of {\"classes\", \"sub_policies\"} objects")
        class_policies = tuple(_class_policy_from(g, f"class group {i}") for i, g in enumerate(groups))
        stages = d.get("stages", [POLICY_STAGE])
        if not isinstance(stages, list):
            raise PolicyError("'stages' must be a list")
        stages = [_stage_from(s, f"stage {i}") for i, s in enumerate(stages)]
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise PolicyError("'meta' must be an object")
        return cls(sub_policies, tuple(stages), d.get("ranges", "aa"), str(d.get("name", "")), meta,
                   class_policies=class_policies)

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise PolicyError(f"policy is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        except RecursionError:
            raise PolicyError("policy JSON is nested too deeply") from None
        try:
            return cls.from_dict(d)
        except RecursionError:
            raise PolicyError("policy JSON is nested too deeply") from None

    # ------------------------------------------------------------------ application
    # Delegates: `augment` (TensorFlow) depends on this module, never the reverse, so it
    # is imported only when a policy is applied and policies stay TensorFlow-free data.
    def apply(self, images, labels=None, seed=0, epoch=0, index=0):
        """Augment a uint8 batch; see `autoaug.augment.apply_policy`.

        Returns ``(images, labels)`` when labels are passed, else the images.
        """
        from .augment import apply_policy
        return apply_policy(self, images, labels, seed=seed, epoch=epoch, index=index)

    def as_layer(self, seed: int = 0):
        """A Keras layer that applies this policy in training; see `autoaug.augment.PolicyLayer`."""
        from .augment import PolicyLayer
        return PolicyLayer(self, seed=seed)

    def summary(self, max_items: int = 6) -> str:
        """One line; per-class groups read `{default: [...]; classes 6,9: [...]}`."""
        def subs_text(sub_policies) -> str:
            subs = ["; ".join(str(st) for st in sp) for sp in sub_policies[:max_items]]
            more = len(sub_policies) - max_items
            return "[" + " | ".join(subs) + (f" | +{more} more" if more > 0 else "") + "]"

        parts = []
        for s in self.stages:
            if s != POLICY_STAGE:
                parts.append(str(s))
            elif not self.class_policies:
                parts.append(subs_text(self.sub_policies))
            else:
                def group_text(subs) -> str:
                    return subs_text(subs) if subs else "[no ops]"
                groups = [f"default: {group_text(self.sub_policies)}"]
                groups += [f"classes {_class_list(g.classes)}: {group_text(g.sub_policies)}"
                           for g in self.class_policies[:max_items]]
                more = len(self.class_policies) - max_items
                parts.append("{" + "; ".join(groups) + (f"; +{more} more groups" if more > 0 else "") + "}")
        return " -> ".join(parts) if parts else "(no augmentation)"


def _stage_from(obj, where: str):
    """'policy', a stage name ('flip', 'crop', 'cutout') or a step."""
    if isinstance(obj, str):
        if obj == POLICY_STAGE or obj in STAGES:
            return STAGES.get(obj, obj)
        raise PolicyError(f"{where}: unknown stage {obj!r} (use 'policy', {', '.join(map(repr, STAGES))} or a step)")
    return _step_from(obj, where)


def _sub_policies_from(subs, where: str) -> tuple:
    """A JSON list of lists of steps; `where` prefixes messages ('' or 'class group 2: ')."""
    if not isinstance(subs, list):
        raise PolicyError(f"{where}'sub_policies' must be a list of lists of steps")
    out = []
    for k, sp in enumerate(subs):
        if not isinstance(sp, list):
            raise PolicyError(f"{where}sub-policy {k} must be a list of steps")
        out.append(tuple(_step_from(s, f"{where}sub-policy {k} step {i}") for i, s in enumerate(sp)))
    return tuple(out)


def _class_policy_from(obj, where: str) -> ClassPolicy:
    """{"classes": [ints], "sub_policies": [[steps]]} -> ClassPolicy."""
    if not isinstance(obj, dict):
        raise PolicyError(f"{where}: must be an object {{\"classes\", \"sub_policies\"}}, got {obj!r}")
    unknown = set(obj) - {"classes", "sub_policies"}
    if unknown:
        raise PolicyError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))} "
                          "(a group has 'classes' and 'sub_policies')")
    missing = [k for k in ("classes", "sub_policies") if k not in obj]
    if missing:
        raise PolicyError(f"{where}: missing {' and '.join(repr(k) for k in missing)}")
    classes = obj["classes"]
    if not isinstance(classes, list):
        raise PolicyError(f"{where}: 'classes' must be a list of class ids, got {classes!r}")
    _check_classes(classes, where)
    subs = _sub_policies_from(obj["sub_policies"], f"{where}: ")
    _validate_sub_policies(subs, f"{where}: ")  # name the group by its position in the file
    return ClassPolicy(tuple(classes), subs)


def _step_from(obj, where: str) -> Step:
    if isinstance(obj, list) and len(obj) == 3:  # compact [op, p, level]
        obj = {"op": obj[0], "p": obj[1], "level": obj[2]}
    if not isinstance(obj, dict):
        raise PolicyError(f"{where}: a step must be {{\"op\", \"p\", \"level\"}}, got {obj!r}")
    unknown = set(obj) - {"op", "p", "level"}
    if unknown or "op" not in obj:
        raise PolicyError(f"{where}: a step needs 'op' (and 'p', 'level'); unexpected keys {sorted(unknown)}")
    p, level = obj.get("p", 1.0), obj.get("level", 0.0)
    for key, value in (("p", p), ("level", level)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PolicyError(f"{where}: {key} must be a number, got {value!r}")
    if not isinstance(obj["op"], str):
        raise PolicyError(f"{where}: op must be a string, got {obj['op']!r}")
    step = Step(obj["op"], float(p), float(level))
    step.validate(where)
    return step


# --------------------------------------------------------------------------- built-ins

# AutoAugment's published reduced-CIFAR-10 policy (Cubuk et al. 2019, Appendix, Table 7):
# 25 sub-policies of two (op, probability, level 0..9) steps.
_AA_CIFAR10 = [
    (("Invert", 0.1, 7), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, 8), ("Equalize", 0.9, 2)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, 5), ("Equalize", 0.5, 1)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, 7), ("AutoContrast", 0.4, 8)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, 3)),
    (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
    (("Equalize", 0.2, 8), ("Equalize", 0.6, 4)),
    (("Color", 0.9, 9), ("Equalize", 0.6, 6)),
    (("AutoContrast", 0.8, 4), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 3)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, 2), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, 8), ("Invert", 0.1, 3)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 1)),
]


def autoaugment_cifar10() -> Policy:
    subs = tuple(tuple(Step(op, p, float(lv)) for op, p, lv in sp) for sp in _AA_CIFAR10)
    return Policy(subs, (POLICY_STAGE,), "aa", "autoaugment-cifar10")


def randaugment(n: int = 2, m: float = 9.0, ops_list=opspec.RANDAUGMENT_OPS) -> Policy:
    """RandAugment(N, M) as data: every ordered N-tuple of ops, each at level M, p = 1.

    Drawing one sub-policy uniformly is the same as drawing each of the N ops
    uniformly and independently, as RandAugment does.
    """
    if not 1 <= n <= 4:
        raise PolicyError(f"RandAugment N must be 1..4, got {n}")
    subs = tuple(tuple(Step(op, 1.0, float(m)) for op in combo)
                 for combo in itertools.product(ops_list, repeat=n))
    return Policy(subs, (POLICY_STAGE,), "aa", f"randaugment-n{n}-m{m:g}")


def trivialaugment_wide(bins: int = 31) -> Policy:
    """TrivialAugment-Wide: one op uniformly, one of `bins` magnitudes uniformly, wide ranges."""
    levels = [round(opspec.MAX_LEVEL * i / (bins - 1), 4) for i in range(bins)]
    subs = tuple((Step(op, 1.0, lv),) for op in opspec.TRIVIALAUGMENT_OPS for lv in levels)
    return Policy(subs, (POLICY_STAGE,), "wide", "trivialaugment-wide")


def _builtin(name: str) -> Policy | None:
    if name == "none":
        return Policy((), (), "aa", "none")
    if name == "standard":
        return Policy((), (), "aa", "standard").with_stages(["standard"])
    if name == "autoaugment-cifar10":
        return autoaugment_cifar10()
    if name == "randaugment":
        return randaugment()
    m = re.fullmatch(r"randaugment-n(\d+)-m(\d+(?:\.\d+)?)", name)
    if m:
        return randaugment(int(m.group(1)), float(m.group(2)))
    if name == "trivialaugment-wide":
        return trivialaugment_wide()
    return None


BUILTIN_NAMES = ["none", "standard", "autoaugment-cifar10", "randaugment", "randaugment-nN-mM",
                 "trivialaugment-wide"]


def builtin(spec: str) -> Policy:
    """A built-in by name, optionally with stages: 'autoaugment-cifar10+standard+cutout'.

    With '+' the named policy's sub-policies run first, then the listed stages in order.

    Args:
        spec: a name of ``BUILTIN_NAMES`` (``randaugment-nN-mM`` with numbers), then
            optionally ``+stage`` for each of 'flip', 'crop', 'cutout', 'standard' (= flip, crop)
            or 'policy'.

    Returns:
        The Policy, named ``spec``.

    Raises:
        PolicyError: an unknown policy or stage name, or RandAugment N outside 1..4.

    >>> p = builtin("autoaugment-cifar10+standard+cutout")
    >>> len(p.sub_policies), p.name
    (25, 'autoaugment-cifar10+standard+cutout')
    >>> [str(s) for s in p.stages]
    ['policy', 'FlipLR p=0.5 L=0', 'PadCrop p=1 L=5', 'Cutout p=1 L=8']
    >>> builtin("randaugment-n1-m5").summary(max_items=2)
    '[Identity p=1 L=5 | AutoContrast p=1 L=5 | +12 more]'
    >>> builtin("fancy")
    Traceback (most recent call last):
    ...
    autoaug.policy.PolicyError: unknown policy 'fancy'; built-ins: none, standard, ...
    """
    base, *stages = spec.split("+")
    policy = _builtin(base)
    if policy is None:
        raise PolicyError(f"unknown policy {base!r}; built-ins: {', '.join(BUILTIN_NAMES)}")
    if stages:
        order = list(policy.stages) + stages
        policy = policy.with_stages(order)
        object.__setattr__(policy, "name", spec)
    return policy
