"""Policies as plain data: JSON in and out, validation, built-in published policies.

A ``Policy`` is an ordered list of *stages*. The stage ``"policy"`` stands for the
sub-policies: each image draws one sub-policy uniformly and runs its steps in order,
each with its own probability (AutoAugment). Any other stage is a single ``Step``
applied per image with its probability (for example the standard flip and pad-crop,
Cutout, or a batch-level MixUp/CutMix that also mixes the labels). The stage order is
part of the policy.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field

from . import ops

SCHEMA_VERSION = 1
RANGES = ("aa", "wide")


class PolicyError(ValueError):
    """A malformed policy; the message is one line that names the problem."""


@dataclass(frozen=True)
class Step:
    op: str
    p: float = 1.0
    level: float = 0.0

    def validate(self, where: str) -> None:
        spec = ops.OPS.get(self.op)
        if spec is None:
            raise PolicyError(f"{where}: unknown op {self.op!r} (known: {', '.join(ops.OP_NAMES)})")
        if not isinstance(self.p, (int, float)) or not 0.0 <= self.p <= 1.0:
            raise PolicyError(f"{where}: probability {self.p!r} for {self.op} is outside [0, 1]")
        if not isinstance(self.level, (int, float)) or not 0.0 <= self.level <= ops.MAX_LEVEL:
            raise PolicyError(
                f"{where}: level {self.level!r} for {self.op} is outside 0..{ops.MAX_LEVEL:g}")

    def to_dict(self) -> dict:
        return {"op": self.op, "p": float(self.p), "level": float(self.level)}

    def __str__(self) -> str:
        return f"{self.op} p={self.p:g} L={self.level:g}"


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

    def __post_init__(self):
        object.__setattr__(self, "sub_policies", tuple(tuple(sp) for sp in self.sub_policies))
        object.__setattr__(self, "stages", tuple(self.stages))
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.ranges not in RANGES:
            raise PolicyError(f"ranges must be one of {RANGES}, got {self.ranges!r}")
        for k, sub in enumerate(self.sub_policies):
            if not sub:
                raise PolicyError(f"sub-policy {k} is empty")
            for i, step in enumerate(sub):
                step.validate(f"sub-policy {k} step {i}")
                if ops.OPS[step.op].kind == "batch":
                    raise PolicyError(
                        f"sub-policy {k} step {i}: {step.op} mixes images, use it as a stage")
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
        return max((len(sp) for sp in self.sub_policies), default=0)

    @property
    def uses_labels(self) -> bool:
        return any(isinstance(s, Step) and ops.OPS[s.op].kind == "batch" for s in self.stages)

    def structure(self) -> tuple:
        """What the augmentation graph depends on; numbers are fed to it as tensors."""
        return tuple(s.op if isinstance(s, Step) else (POLICY_STAGE, self.num_steps)
                     for s in self.stages if isinstance(s, Step) or self.sub_policies)

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
        return Policy(self.sub_policies, tuple(stages), self.ranges, self.name, dict(self.meta))

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        d = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "ranges": self.ranges,
            "stages": [s.to_dict() if isinstance(s, Step) else s for s in self.stages],
            "sub_policies": [[s.to_dict() for s in sp] for sp in self.sub_policies],
        }
        if self.meta:
            d["meta"] = self.meta
        return d

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str) -> None:
        """Write atomically: a crash never leaves half a policy file."""
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(self.to_json())
            f.write("\n")
        os.replace(tmp, path)

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
        unknown = set(d) - {"schema_version", "name", "ranges", "stages", "sub_policies", "meta"}
        if unknown:
            raise PolicyError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        subs = d.get("sub_policies", [])
        if not isinstance(subs, list):
            raise PolicyError("'sub_policies' must be a list of lists of steps")
        sub_policies = []
        for k, sp in enumerate(subs):
            if not isinstance(sp, list):
                raise PolicyError(f"sub-policy {k} must be a list of steps")
            sub_policies.append(tuple(_step_from(s, f"sub-policy {k} step {i}") for i, s in enumerate(sp)))
        stages = d.get("stages", [POLICY_STAGE])
        if not isinstance(stages, list):
            raise PolicyError("'stages' must be a list")
        stages = [_stage_from(s, f"stage {i}") for i, s in enumerate(stages)]
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise PolicyError("'meta' must be an object")
        return cls(tuple(sub_policies), tuple(stages), d.get("ranges", "aa"), str(d.get("name", "")), meta)

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise PolicyError(f"policy is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
        return cls.from_dict(d)

    # ------------------------------------------------------------------ application
    def apply(self, images, labels=None, seed=0, epoch=0, index=0):
        """Augment a uint8 batch; see `autoaug.augment.apply_policy`."""
        from .augment import apply_policy
        return apply_policy(self, images, labels, seed=seed, epoch=epoch, index=index)

    def as_layer(self, seed: int = 0):
        from .augment import PolicyLayer
        return PolicyLayer(self, seed=seed)

    def summary(self, max_items: int = 6) -> str:
        parts = []
        for s in self.stages:
            if s == POLICY_STAGE:
                subs = ["; ".join(str(st) for st in sp) for sp in self.sub_policies[:max_items]]
                more = len(self.sub_policies) - max_items
                parts.append("[" + " | ".join(subs) + (f" | +{more} more" if more > 0 else "") + "]")
            else:
                parts.append(str(s))
        return " -> ".join(parts) if parts else "(no augmentation)"


def _stage_from(obj, where: str):
    """'policy', a stage name ('flip', 'crop', 'cutout') or a step."""
    if isinstance(obj, str):
        if obj == POLICY_STAGE or obj in STAGES:
            return STAGES.get(obj, obj)
        raise PolicyError(f"{where}: unknown stage {obj!r} (use 'policy', {', '.join(map(repr, STAGES))} or a step)")
    return _step_from(obj, where)


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


def randaugment(n: int = 2, m: float = 9.0, ops_list=ops.RANDAUGMENT_OPS) -> Policy:
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
    levels = [round(ops.MAX_LEVEL * i / (bins - 1), 4) for i in range(bins)]
    subs = tuple((Step(op, 1.0, lv),) for op in ops.TRIVIALAUGMENT_OPS for lv in levels)
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
