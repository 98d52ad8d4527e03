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

Schedules: a policy may carry a ``Schedule``, keyframes over the fraction of training
done, each a schedule-free policy. ``linear`` interpolates probabilities and levels
between keyframes (the same ops in the same places); ``step`` holds each keyframe's
policy until the next one (Population Based Augmentation's form; every keyframe has the
same ``structure()``, so one graph serves them all). ``Policy.at(fraction)`` is the
policy in effect at a point of training. The file format is version 2 when a policy has
a schedule; a policy without one is written as version 1, as before, so its digest and
the files older autoaug wrote stay as they were.
"""
from __future__ import annotations

import hashlib
import itertools
import dataclasses
import json
import math
import numbers
import re
import struct
from dataclasses import dataclass, field

from . import opspec
from .files import atomic_write

SCHEMA_VERSION = 2  # 2 adds "schedule"; policies without one are written as version 1
RANGES = opspec.RANGES
SCHEDULE_MODES = ("linear", "step")


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
    schedule: "Schedule | None" = None  # own stages and sub-policies are its first keyframe's

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
        if self.schedule is not None:
            if not isinstance(self.schedule, Schedule):
                raise PolicyError(f"schedule must be a Schedule, got {type(self.schedule).__name__}")
            if _content(self) != _content(self.schedule.keyframes[0][1]):
                raise PolicyError("a scheduled policy's own stages and sub-policies must be its first "
                                  "keyframe's: build it with Policy.scheduled(keyframes)")

    # ------------------------------------------------------------------ derived views
    @property
    def num_steps(self) -> int:
        """The longest sub-policy, over the default and every class group."""
        return max([len(sp) for sp in self.sub_policies]
                   + [g.num_steps for g in self.class_policies], default=0)

    @property
    def per_class(self) -> bool:
        """True when some classes have their own sub-policies (labels are then needed)."""
        return bool(self.class_policies) or any(p.class_policies for p in self._frames()[1:])

    def _frames(self) -> tuple:
        """The schedule-free policies this one applies: its keyframes, or itself."""
        return tuple(p for _, p in self.schedule.keyframes) if self.schedule else (self,)

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
        if self.schedule is not None:  # every keyframe gets the same stages
            return Policy.scheduled([(at, p.with_stages(order)) for at, p in self.schedule.keyframes],
                                    self.schedule.mode, name=self.name, meta=dict(self.meta))
        return Policy(self.sub_policies, tuple(stages), self.ranges, self.name, dict(self.meta),
                      class_policies=self.class_policies)

    def canonical(self) -> "Policy":
        """The same augmentation, spelled one way: a sub-policy step that cannot change a pixel
        (probability 0, or Identity) is written ``Identity p=0 L=0``, and an op without a
        magnitude gets level 0. The pixels stay the same for every seed; the digest no longer
        tells apart spellings of one augmentation, so a search trains it once and selection
        does not spend seeds on a twin. A scheduled policy is returned as it is.

        >>> a = Policy(((Step("ShearX", 0.0, 8.0),), (Step("AutoContrast", 0.4, 7.0),)))
        >>> b = Policy(((Step("Brightness", 0.0, 6.0),), (Step("AutoContrast", 0.4, 2.0),)))
        >>> a.digest() == b.digest(), a.canonical().digest() == b.canonical().digest()
        (False, True)
        >>> str(a.canonical().sub_policies[0][0]), str(a.canonical().sub_policies[1][0])
        ('Identity p=0 L=0', 'AutoContrast p=0.4 L=0')
        """
        def step(s: Step) -> Step:
            if s.p == 0 or s.op == "Identity":
                return Step("Identity", 0.0, 0.0)
            return s if opspec.OPS[s.op].has_level else Step(s.op, s.p, 0.0)

        if self.schedule is not None:  # keyframes interpolate step by step: their spelling must stay
            return self
        return self.map_steps(step)

    def map_steps(self, fn) -> "Policy":
        """This schedule-free policy with `fn(step)` in place of every sub-policy step (the class
        groups' too); stages, name and meta kept."""
        def subs(sub_policies) -> tuple:
            return tuple(tuple(fn(s) for s in sp) for sp in sub_policies)

        groups = tuple(ClassPolicy(g.classes, subs(g.sub_policies)) for g in self.class_policies)
        return Policy(subs(self.sub_policies), self.stages, self.ranges, self.name, dict(self.meta),
                      class_policies=groups)

    # ------------------------------------------------------------------ schedules
    @classmethod
    def scheduled(cls, keyframes, mode: str = "step", name: str | None = None,
                  meta: dict | None = None) -> "Policy":
        """A policy that changes over training; see `Schedule`.

        Args:
            keyframes: ``[(fraction of training, Policy), ...]``, the first at 0.0,
                fractions increasing; schedule-free policies.
            mode: "linear" (probabilities and levels interpolate; the same ops in the same
                places) or "step" (each policy holds until the next keyframe; the same structure).
            name, meta: the policy's (default: the first keyframe's name, no meta).

        Raises:
            PolicyError: one line naming the problem (order, range, mismatched keyframes).

        >>> calm = Policy(((Step("Rotate", 0.2, 1.0),),))
        >>> wild = Policy(((Step("Rotate", 0.8, 9.0),),))
        >>> ramp = Policy.scheduled([(0.0, calm), (1.0, wild)], mode="linear", name="ramp")
        >>> ramp.summary()
        'schedule (linear, 2 keyframes): @0 [Rotate p=0.2 L=1], then @1 [Rotate p=0.8 L=9]'
        >>> str(ramp.at(0.5).sub_policies[0][0])
        'Rotate p=0.5 L=5'
        >>> Policy.scheduled([(0.0, calm), (0.0, wild)])
        Traceback (most recent call last):
        ...
        autoaug.policy.PolicyError: schedule keyframe 1 at 0 comes at the same time as keyframe 0 at 0: fractions must increase
        """
        keyframes = tuple(keyframes)
        schedule = Schedule(mode, keyframes)
        first = schedule.keyframes[0][1]
        if name is None:
            name = keyframes[0][1].name
        return cls(first.sub_policies, first.stages, first.ranges, name, dict(meta or {}),
                   class_policies=first.class_policies, schedule=schedule)

    def at(self, fraction: float) -> "Policy":
        """The schedule-free policy in effect at `fraction` of training (interpolated for a
        linear schedule, in float32 exactly as the augmentation graph does); a policy
        without schedule is itself."""
        if self.schedule is None:
            return self
        return dataclasses.replace(self.schedule.at(fraction), name=self.name, meta=dict(self.meta))

    @classmethod
    def from_intervals(cls, history, epochs: int, name: str = "", meta: dict | None = None) -> "Policy":
        """A step schedule from a training's policy history ``[(start_epoch, policy), ...]``.

        The first interval starts at epoch 0; each policy holds until the next start.
        Keyframes are at ``start_epoch / epochs``; consecutive identical policies merge.

        >>> a = builtin("standard")
        >>> b = a.with_stages(["flip", Step("PadCrop", 1.0, 2.0)])
        >>> p = Policy.from_intervals([(0, a), (3, a), (6, b)], epochs=12, name="pbt")
        >>> [at for at, _ in p.schedule.keyframes], p.at(0.4).summary(), p.at(0.5).summary()
        ([0.0, 0.5], 'FlipLR p=0.5 L=0 -> PadCrop p=1 L=5', 'FlipLR p=0.5 L=0 -> PadCrop p=1 L=2')
        """
        if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
            raise PolicyError(f"epochs must be a positive integer, got {epochs!r}")
        history = list(history)
        if not history:
            raise PolicyError("a policy history needs at least one (start_epoch, policy) interval")
        keyframes, previous = [], None
        for i, item in enumerate(history):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise PolicyError(f"policy history item {i}: expected (start_epoch, Policy), got {item!r}")
            start, policy = item
            if isinstance(start, bool) or not isinstance(start, numbers.Integral):
                raise PolicyError(f"policy history item {i}: start epoch {start!r} is not an integer")
            if i == 0 and start != 0:
                raise PolicyError(f"policy history starts at epoch {start}: the first interval starts at epoch 0")
            if not 0 <= start < epochs:
                raise PolicyError(f"policy history item {i}: epoch {start} is outside 0..{epochs - 1}")
            if previous is not None and start <= previous:
                raise PolicyError(f"policy history item {i}: epoch {start} does not come after epoch {previous}")
            if not isinstance(policy, Policy):
                raise PolicyError(f"policy history item {i}: expected a Policy, got {type(policy).__name__}")
            previous = start
            if keyframes and _content(keyframes[-1][1]) == _content(policy) and not policy.schedule:
                continue
            keyframes.append((int(start) / epochs, policy))
        return cls.scheduled(keyframes, "step", name=name, meta=meta)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        # version 1 unless there is a schedule: digests of policies without one stay as they were
        d = {"schema_version": SCHEMA_VERSION if self.schedule else 1, "name": self.name,
             "ranges": self.ranges, **_content_dict(self)}
        if self.schedule is not None:
            d["schedule"] = self.schedule.to_dict()
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
        version = d.get("schema_version", SCHEMA_VERSION)  # no version: read as the newest
        if isinstance(version, bool) or version not in range(1, SCHEMA_VERSION + 1):
            raise PolicyError(f"unsupported schema_version {version!r} (this autoaug reads 1..{SCHEMA_VERSION})")
        unknown = set(d) - {"schema_version", "name", "ranges", "stages", "sub_policies", "meta",
                            "class_policies", "schedule"}
        if unknown:
            raise PolicyError(f"unknown policy keys: {', '.join(sorted(unknown))}")
        if "schedule" in d:
            if version < 2:
                raise PolicyError(f"'schedule' needs schema_version 2, the file says {version}")
            return cls._scheduled_from(d)
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
    def _scheduled_from(cls, d: dict) -> "Policy":
        """A version-2 policy with a "schedule"; its top-level stages and sub-policies, when
        given, must be the first keyframe's."""
        s = d["schedule"]
        if not isinstance(s, dict):
            raise PolicyError("'schedule' must be an object {\"mode\", \"keyframes\"}")
        unknown = set(s) - {"mode", "keyframes"}
        if unknown:
            raise PolicyError(f"schedule: unknown keys {', '.join(sorted(map(str, unknown)))} "
                              "(a schedule has 'mode' and 'keyframes')")
        frames = s.get("keyframes")
        if not isinstance(frames, list) or not frames:
            raise PolicyError("schedule: 'keyframes' must be a non-empty list of {\"at\", \"stages\", "
                              "\"sub_policies\"} objects")
        ranges = d.get("ranges", "aa")
        keyframes = []
        for i, kf in enumerate(frames):
            where = f"schedule keyframe {i}"
            if not isinstance(kf, dict):
                raise PolicyError(f"{where}: must be an object {{\"at\", \"stages\", \"sub_policies\"}}, got {kf!r}")
            unknown = set(kf) - {"at", "stages", "sub_policies", "class_policies"}
            if unknown:
                raise PolicyError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))} "
                                  "(a keyframe has 'at', 'stages', 'sub_policies', 'class_policies')")
            if "at" not in kf:
                raise PolicyError(f"{where}: missing 'at' (the fraction of training, 0..1)")
            try:
                policy = cls.from_dict({"schema_version": 1, "ranges": ranges,
                                        **{k: v for k, v in kf.items() if k != "at"}})
            except PolicyError as e:
                raise PolicyError(f"{where}: {e}") from None
            keyframes.append((kf["at"], policy))
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise PolicyError("'meta' must be an object")
        policy = cls.scheduled(keyframes, s.get("mode", "step"), name=str(d.get("name", "")), meta=meta)
        top = cls.from_dict({k: v for k, v in d.items() if k not in ("schedule", "meta")} | {"schema_version": 1})
        first = policy.schedule.keyframes[0][1]
        for key, attr in (("stages", "stages"), ("sub_policies", "sub_policies"), ("class_policies", "class_policies")):
            if key in d and getattr(top, attr) != getattr(first, attr):
                raise PolicyError(f"the top-level '{key}' differ from schedule keyframe 0's: they are the "
                                  "policy at the start of training (leave them out or copy keyframe 0)")
        return policy

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
    def apply(self, images, labels=None, seed=0, epoch=0, index=0, progress=None, *,
              batch_size=None, batches: int = 1):
        """Augment a uint8 batch (or ``batches`` consecutive ones); see
        `autoaug.augment.apply_policy`.

        ``progress`` (the fraction of training done) places a scheduled policy in its
        schedule. Returns ``(images, labels)`` when labels are passed, else the images.
        """
        from .augment import apply_policy
        return apply_policy(self, images, labels, seed=seed, epoch=epoch, index=index, progress=progress,
                            batch_size=batch_size, batches=batches)

    def as_layer(self, seed: int = 0, **kwargs):
        """A Keras layer that applies this policy in training; see `autoaug.augment.PolicyLayer`
        (``steps_per_epoch``, ``total_epochs``: key batches as the tf.data pipeline does)."""
        from .augment import PolicyLayer
        return PolicyLayer(self, seed=seed, **kwargs)

    def summary(self, max_items: int = 6) -> str:
        """One line; per-class groups read `{default: [...]; classes 6,9: [...]}`; a schedule
        reads `schedule (step, 4 keyframes): @0 [...], then @0.25 [...], ...`."""
        if self.schedule is not None:
            frames = self.schedule.keyframes
            shown = [f"@{at:g} {p.summary(max_items)}" for at, p in frames[:max_items]]
            more = len(frames) - max_items
            return (f"schedule ({self.schedule.mode}, {len(frames)} keyframe{'s' * (len(frames) != 1)}): "
                    + ", then ".join(shown) + (f", +{more} more keyframes" if more > 0 else ""))
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


def _content(policy: Policy) -> tuple:
    """What a keyframe is, for comparisons: everything but name, meta and schedule."""
    return policy.sub_policies, policy.stages, policy.ranges, policy.class_policies


def _content_dict(policy: Policy) -> dict:
    """The stages and sub-policies as JSON (class groups only when present)."""
    d = {"stages": [s.to_dict() if isinstance(s, Step) else s for s in policy.stages],
         "sub_policies": [[s.to_dict() for s in sp] for sp in policy.sub_policies]}
    if policy.class_policies:  # only when present: digests of plain policies stay as they were
        d["class_policies"] = [g.to_dict() for g in policy.class_policies]
    return d


def _f32(x: float) -> float:
    """`x` rounded to float32, the precision of the augmentation graph. One rounding after each
    +, -, *, / of float32 values gives float32 arithmetic exactly (double has 53 >= 2 * 24 + 2 bits)."""
    return struct.unpack("f", struct.pack("f", x))[0]


def _mix(a: float, b: float, t: float, high: float) -> float:
    """``(1 - t) * a + t * b`` in float32, clipped to [0, high], as the graph computes it."""
    a, b = _f32(a), _f32(b)
    value = _f32(_f32(_f32(1.0 - t) * a) + _f32(t * b))
    return min(max(value, 0.0), high)


def _describe(structure: tuple) -> str:
    """`policy (2 steps) > FlipLR > PadCrop` for a `Policy.structure()`."""
    return " > ".join(f"policy ({s[1]} step{'s' * (s[1] != 1)})" if isinstance(s, tuple) else s
                      for s in structure) or "no stages"


def _skeleton(policy: Policy) -> list:
    """(place, op) for every step and stage, and (place, classes) for class groups: what a
    linear schedule may not change between keyframes."""
    # every count comes before what it counts, so the first difference is at the same place
    out = [("the number of stages", len(policy.stages))]
    out += [(f"stage {i}", s.op if isinstance(s, Step) else s) for i, s in enumerate(policy.stages)]
    out.append(("the number of class groups", len(policy.class_policies)))
    out += [(f"class group {g}", _class_list(c.classes)) for g, c in enumerate(policy.class_policies)]
    groups = [("", policy.sub_policies)] + [(f"class group {g} ", c.sub_policies)
                                            for g, c in enumerate(policy.class_policies)]
    for prefix, subs in groups:
        out.append((f"the number of {prefix}sub-policies", len(subs)))
        for k, sp in enumerate(subs):
            out.append((f"the length of {prefix}sub-policy {k}", len(sp)))
            out += [(f"{prefix}sub-policy {k} step {i}", s.op) for i, s in enumerate(sp)]
    return out


@dataclass(frozen=True)
class Schedule:
    """How a policy changes over training: keyframes ``((fraction, Policy), ...)``.

    The first keyframe is at 0.0 and fractions increase (they are fractions of training
    done, in [0, 1]); keyframe policies carry no schedule and share one ``ranges``.
    ``linear``: probabilities and levels (of sub-policy steps and stages) interpolate
    linearly between keyframes, so every keyframe has the same ops in the same places.
    ``step``: each keyframe's policy holds until the next (PBA); keyframes may differ in
    anything but ``structure()`` (stage sequence and steps per sub-policy).
    Past the last keyframe its policy holds.
    """
    mode: str
    keyframes: tuple

    def __post_init__(self):
        if self.mode not in SCHEDULE_MODES:
            raise PolicyError(f"schedule mode must be linear or step, got {self.mode!r}")
        frames = self.keyframes
        if isinstance(frames, (str, bytes, dict)) or not hasattr(frames, "__iter__"):
            raise PolicyError(f"schedule keyframes must be a list of (fraction, Policy), got {frames!r}")
        out = []
        for i, kf in enumerate(frames):
            if not (isinstance(kf, (tuple, list)) and len(kf) == 2):
                raise PolicyError(f"schedule keyframe {i}: expected (fraction, Policy), got {kf!r}")
            at, policy = kf
            if isinstance(at, bool) or not isinstance(at, numbers.Real) or not math.isfinite(at):
                raise PolicyError(f"schedule keyframe {i}: the fraction of training must be a number, got {at!r}")
            if not isinstance(policy, Policy):
                raise PolicyError(f"schedule keyframe {i}: expected a Policy, got {type(policy).__name__}")
            if policy.schedule is not None:
                raise PolicyError(f"schedule keyframe {i} has a schedule of its own")
            if policy.name or policy.meta:  # a keyframe is augmentation only
                policy = dataclasses.replace(policy, name="", meta={})
            out.append((float(at), policy))
        object.__setattr__(self, "keyframes", tuple(out))
        self.validate()

    def validate(self) -> None:
        frames = self.keyframes
        if not frames:
            raise PolicyError("a schedule needs at least one keyframe")
        for i, (at, policy) in enumerate(frames):
            if not 0.0 <= at <= 1.0:
                raise PolicyError(f"schedule keyframe {i} at {at:g} is outside [0, 1] (the fraction of training done)")
            if i == 0 and at != 0.0:
                raise PolicyError(f"schedule keyframe 0 is at {at:g}: the first keyframe must be at 0 "
                                  "(the start of training)")
            if i:
                before = frames[i - 1][0]
                if _f32(at) <= _f32(before):
                    how = "before" if at < before else "at the same time as" if at == before else "too close to"
                    raise PolicyError(f"schedule keyframe {i} at {at:g} comes {how} keyframe {i - 1} at "
                                      f"{before:g}: fractions must increase")
            first = frames[0][1]
            if policy.ranges != first.ranges:
                raise PolicyError(f"schedule keyframe {i} has ranges {policy.ranges}, keyframe 0 has "
                                  f"{first.ranges}: one schedule uses one set of ranges")
            if self.mode == "step" and policy.structure() != first.structure():
                raise PolicyError(
                    f"step schedule keyframe {i} is {_describe(policy.structure())}, keyframe 0 is "
                    f"{_describe(first.structure())}: every keyframe needs the same stages and steps per sub-policy")
            if self.mode == "linear" and i:
                for (place, x), (_, y) in zip(_skeleton(first), _skeleton(policy)):
                    if x != y:
                        raise PolicyError(
                            f"linear schedule keyframe {i}: {place} is {y}, in keyframe 0 {x}; a linear "
                            "schedule changes only p and level (use mode step to change ops)")

    def position(self, fraction: float) -> tuple[int, int, float]:
        """(k, k1, t): keyframe k is in effect at `fraction`, t of the way to keyframe k1
        (t = 0 for step schedules). float32, as `autoaug.augment.tables_at` computes it."""
        f = _f32(float(fraction))
        at = [_f32(a) for a, _ in self.keyframes]
        k = min(max(sum(a <= f for a in at) - 1, 0), len(at) - 1)
        k1 = min(k + 1, len(at) - 1)
        if self.mode == "step" or k1 == k:
            return k, k1, 0.0
        t = _f32(_f32(f - at[k]) / _f32(at[k1] - at[k]))
        return k, k1, min(max(t, 0.0), 1.0)

    def at(self, fraction: float) -> Policy:
        """The keyframe policy in effect at `fraction` (interpolated when linear)."""
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not math.isfinite(fraction):
            raise PolicyError(f"a fraction of training must be a number, got {fraction!r}")
        k, k1, t = self.position(fraction)
        policy = self.keyframes[k][1]
        if self.mode == "step" or t == 0.0:
            return policy
        other = self.keyframes[k1][1]
        top = opspec.MAX_LEVEL

        def step(a: Step, b: Step) -> Step:
            return Step(a.op, _mix(a.p, b.p, t, 1.0), _mix(a.level, b.level, t, top))

        def subs(x, y) -> tuple:
            return tuple(tuple(step(a, b) for a, b in zip(sa, sb)) for sa, sb in zip(x, y))

        stages = tuple(step(a, b) if isinstance(a, Step) else a for a, b in zip(policy.stages, other.stages))
        groups = tuple(ClassPolicy(g.classes, subs(g.sub_policies, h.sub_policies))
                       for g, h in zip(policy.class_policies, other.class_policies))
        return Policy(subs(policy.sub_policies, other.sub_policies), stages, policy.ranges,
                      class_policies=groups)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "keyframes": [{"at": at, **_content_dict(p)} for at, p in self.keyframes]}


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
