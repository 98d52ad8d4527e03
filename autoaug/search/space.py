"""Search spaces: YAML -> named parameters -> Policy.

A space knows nothing of Optuna or KerasTuner. It asks a ``Suggest`` object for each
parameter (categorical, int or float, always with the same choices) and turns the
answers into a Policy. Drivers adapt their trial objects to ``Suggest``.

Kinds:
  autoaugment     K sub-policies x L steps; each step an op, a probability and a level
  randaugment     N ops drawn uniformly per image, all at magnitude M
  trivialaugment  one op per image from a searched op set, level uniform up to a searched cap
Every kind may also search the order of the stages (policy, flip, crop, cutout) as a permutation,
and whether each stage listed in ``optional_stages`` is used at all (``stage.<name>``: true or false).
``stage_magnitudes`` lists stages (crop, cutout) whose level is searched over ``levels``
(``stage.<name>.level``; level 0 is no crop / no Cutout) instead of the reference level.
``max_levels`` caps ops of the sub-policies and stages of ``stage_magnitudes`` one by one
(``{ShearY: 6, cutout: 4}``): a searched level l means l/10 of that cap, so every op keeps
the same choices (a screen writes it: `autoaug.search.screen`). For the enhance ops, whose
identity is level 5, the cap is a distance: Contrast capped at 4 spans levels 3..7.
An autoaugment space with ``per_class: true`` searches K x L sub-policies for every class
(a label-conditioned policy); density matching scores each class on its own held-out images.

Any kind may ask for a schedule (``schedule:``), so that augmentation changes as training goes:

  schedule:
    kind: ramp              # the only kind so far
    start: [0.0, 1.0]       # strength at the start of training: searched in this range (or one number)
    end: [0.5, 1.5]         # strength at the end
    shape: [linear, cosine] # searched among these (or one name); cosine eases in and out
    scale: both             # what the strength multiplies: levels, probabilities or both (default)
    ramped: [policy, crop]  # what is ramped: the sub-policies' steps ('policy') and/or stages (default: policy)
    keyframes: 5            # keyframes that trace a cosine (3..11; linear needs 2)

The sampled policy is the one at strength 1. At fraction f of training its ramped levels
and/or probabilities are multiplied by strength(f), which goes from ``start`` to ``end``,
clipped to their ranges (0..10, 0..1): a linear ``Schedule`` whose keyframes sample
strength(f). The parameters ``schedule.start``, ``schedule.end`` and ``schedule.shape``
(only those with a choice) are ordinary suggestions, searched like any other.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from typing import Protocol

from .. import opspec
from ..config import ConfigError, read_yaml
from ..policy import POLICY_STAGE, STAGES, ClassPolicy, Policy, Step

KINDS = ("autoaugment", "randaugment", "trivialaugment")
RAMP_SHAPES = ("linear", "cosine")
RAMP_SCALES = ("levels", "probabilities", "both")
MAX_STRENGTH = 2.0
_OP_SETS = {"autoaugment": opspec.AUTOAUGMENT_OPS, "randaugment": opspec.RANDAUGMENT_OPS,
            "all": opspec.IMAGE_OPS}


class Suggest(Protocol):
    def categorical(self, name: str, choices: list): ...
    def int(self, name: str, low: int, high: int): ...
    def float(self, name: str, low: float, high: float): ...


class RandomSuggest:
    """A Suggest that answers with uniform draws from numpy's ``default_rng(seed)``."""

    def __init__(self, seed: int):
        import numpy as np
        self.rng = np.random.default_rng(seed)

    def categorical(self, name, choices):
        return choices[int(self.rng.integers(len(choices)))]

    def int(self, name, low, high):
        return int(self.rng.integers(low, high + 1))

    def float(self, name, low, high):
        return float(self.rng.uniform(low, high))


@dataclass(frozen=True)
class Ramp:
    """A ramp schedule: strength from `start` to `end` over training (see the module docstring).

    `start` and `end` are (low, high) ranges of the searched multipliers (low == high: fixed).
    """
    start: tuple = (0.0, 1.0)
    end: tuple = (1.0, 1.0)
    shapes: tuple = ("linear",)
    scale: str = "both"
    ramped: tuple = (POLICY_STAGE,)
    keyframes: int = 5

    def to_dict(self) -> dict:
        return {"kind": "ramp", "start": list(self.start), "end": list(self.end), "shape": list(self.shapes),
                "scale": self.scale, "ramped": list(self.ramped), "keyframes": self.keyframes}

    @staticmethod
    def strength(shape: str, start: float, end: float, fraction: float) -> float:
        """The multiplier at `fraction` of training."""
        eased = fraction if shape == "linear" else (1.0 - math.cos(math.pi * fraction)) / 2.0
        return start + (end - start) * eased

    def scaled(self, policy: Policy, strength: float) -> Policy:
        """`policy` with its ramped levels and/or probabilities multiplied by `strength`."""
        def step(s: Step) -> Step:
            p = min(round(s.p * strength, 4), 1.0) if self.scale != "levels" else s.p
            level = (min(round(s.level * strength, 4), opspec.MAX_LEVEL)
                     if self.scale != "probabilities" else s.level)
            return Step(s.op, p, level)

        names = {STAGES[name].op: name for name in STAGES}
        stages = tuple(step(s) if isinstance(s, Step) and names.get(s.op) in self.ramped else s
                       for s in policy.stages)
        steps = policy.map_steps(step) if POLICY_STAGE in self.ramped else policy
        return Policy(steps.sub_policies, stages, policy.ranges, class_policies=steps.class_policies)

    def sample(self, policy: Policy, suggest: "Suggest") -> Policy:
        """`policy` (at strength 1) ramped: a linear Schedule with the searched start, end and shape."""
        def multiplier(name: str, bounds: tuple) -> float:
            low, high = bounds
            return float(low) if low == high else float(suggest.float(name, float(low), float(high)))

        start, end = multiplier("schedule.start", self.start), multiplier("schedule.end", self.end)
        shape = self.shapes[0] if len(self.shapes) == 1 else suggest.categorical("schedule.shape", list(self.shapes))
        n = 2 if shape == "linear" else self.keyframes
        fractions = [i / (n - 1) for i in range(n)]
        return Policy.scheduled([(f, self.scaled(policy, self.strength(shape, start, end, f))) for f in fractions],
                                mode="linear", name=policy.name, meta=dict(policy.meta))


@dataclass(frozen=True)
class SearchSpace:
    kind: str
    ops: tuple
    sub_policies: int = 5
    steps: int = 2
    probabilities: tuple = tuple(round(i / 10, 1) for i in range(11))
    levels: tuple = tuple(range(11))
    ranges: str = "aa"
    stages: tuple = (POLICY_STAGE, "flip", "crop")
    search_order: bool = True
    per_class: bool = False
    optional_stages: tuple = ()
    stage_magnitudes: tuple = ()
    name: str = ""
    # (op, classes): ops of a per-class space left out of those classes' choices (`honouring`)
    class_forbidden: tuple = ()
    schedule: Ramp | None = None
    max_levels: tuple = ()  # (op or stage, highest level) pairs; the others reach 10

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "ops": list(self.ops), "sub_policies": self.sub_policies,
             "steps": self.steps, "probabilities": list(self.probabilities),
             "levels": list(self.levels), "ranges": self.ranges, "stages": list(self.stages),
             "search_order": self.search_order, "name": self.name}
        if self.per_class:  # only when set: the digests of existing spaces do not change
            d["per_class"] = True
        if self.optional_stages:
            d["optional_stages"] = list(self.optional_stages)
        if self.stage_magnitudes:
            d["stage_magnitudes"] = list(self.stage_magnitudes)
        if self.class_forbidden:
            d["class_forbidden"] = {op: list(classes) for op, classes in self.class_forbidden}
        if self.schedule is not None:
            d["schedule"] = self.schedule.to_dict()
        if self.max_levels:
            d["max_levels"] = dict(self.max_levels)
        return d

    def _level(self, name: str, level) -> float:
        """A searched level within `name`'s cap (`max_levels`): scaled towards the op's identity
        level (0, or 5 for the enhance ops, whose cap c spans levels 5 - c/2 .. 5 + c/2)."""
        cap = dict(self.max_levels).get(name)
        if cap is None:
            return float(level)
        still = opspec.OPS[STAGES[name].op if name in STAGES else name].identity_level(self.ranges)
        return round(still + (float(level) - still) * cap / opspec.MAX_LEVEL, 4)

    def honouring(self, forbidden) -> "SearchSpace":
        """This space without the ops that change the dataset's labels (`autoaug.labels.ForbiddenOps`).

        Stages (flip...) and the ops of sub-policies that reach every class lose every op
        forbidden for some class; a per-class space keeps an op forbidden for some classes
        only, out of those classes' choices. Deterministic: one space per dataset, one digest.
        """
        if not forbidden:
            return self
        gone = forbidden.everywhere if self.per_class else forbidden.anywhere
        ops = tuple(op for op in self.ops if op not in gone)
        if not ops:
            raise ConfigError(f"search space {self.name or 'inline'}: every op of it changes the labels "
                              f"of {forbidden.dataset} (data.forbidden_ops); add ops that keep them")
        bad_stages = {st for st in self.stages if st != POLICY_STAGE and STAGES[st].op in forbidden.anywhere}
        partial = tuple((op, tuple(sorted(forbidden.classes(op)))) for op in ops
                        if self.per_class and forbidden.classes(op))
        space = dataclasses.replace(
            self, ops=ops, stages=tuple(st for st in self.stages if st not in bad_stages),
            optional_stages=tuple(st for st in self.optional_stages if st not in bad_stages),
            stage_magnitudes=tuple(st for st in self.stage_magnitudes if st not in bad_stages),
            max_levels=tuple((k, v) for k, v in self.max_levels if k in ops or k in STAGES and k not in bad_stages),
            class_forbidden=partial,
            schedule=self.schedule and dataclasses.replace(
                self.schedule, ramped=tuple(st for st in self.schedule.ramped if st not in bad_stages)))
        for c in sorted({c for _, classes in partial for c in classes}):
            if not space.class_ops(c):
                raise ConfigError(f"search space {self.name or 'inline'}: every op of it changes the labels "
                                  f"of class {c} of {forbidden.dataset}; add ops that keep them")
        return space

    def class_ops(self, c: int | None = None) -> list:
        """The op choices of class `c`'s sub-policies (None: sub-policies for every class)."""
        if c is None:
            return list(self.ops)
        return [op for op in self.ops if not any(op == o and c in classes for o, classes in self.class_forbidden)]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    @property
    def orders(self) -> list[str]:
        """Every permutation of the stages, as a fixed list of categorical choices."""
        if not self.search_order:
            return [">".join(self.stages)]
        return [">".join(p) for p in itertools.permutations(self.stages)]

    # ------------------------------------------------------------------ sampling
    def _sub_policies(self, suggest: Suggest, prefix: str = "", c: int | None = None) -> list:
        subs = []
        for k in range(self.sub_policies):
            steps = []
            for s in range(self.steps):
                key = f"{prefix}sp{k}.step{s}"
                op = suggest.categorical(f"{key}.op", self.class_ops(c))
                p = suggest.categorical(f"{key}.p", list(self.probabilities))
                level = suggest.categorical(f"{key}.level", list(self.levels))
                steps.append(Step(op, float(p), self._level(op, level)))
            subs.append(tuple(steps))
        return subs

    def sample(self, suggest: Suggest, num_classes: int = 0, canonical: bool = True) -> Policy:
        """The policy that `suggest`'s answers pick, in `Policy.canonical` spelling (so that
        answers that differ only where pixels do not are one policy to the search)."""
        groups = ()
        if self.per_class:
            if num_classes < 1:
                raise ConfigError("a per-class search space needs the dataset's number of classes")
            subs = []
            groups = tuple(ClassPolicy((c,), tuple(self._sub_policies(suggest, f"c{c}.", c)))
                           for c in range(num_classes))
        elif self.kind == "autoaugment":
            subs = self._sub_policies(suggest)
        elif self.kind == "randaugment":
            n = suggest.int("n", 1, self.steps)
            m = suggest.categorical("m", list(self.levels))
            subs = [tuple(Step(op, 1.0, float(m)) for op in combo)
                    for combo in itertools.product(self.ops, repeat=n)]
        else:  # trivialaugment
            chosen = [op for op in self.ops if suggest.categorical(f"use.{op}", [True, False])]
            cap = suggest.categorical("max_level", [lv for lv in self.levels if lv > 0])
            chosen = chosen or ["Identity"]
            grid = [round(cap * i / 10, 4) for i in range(11)]
            subs = [(Step(op, 1.0, float(lv)),) for op in chosen for lv in grid]
        order = suggest.categorical("order", self.orders).split(">")
        dropped = {st for st in self.optional_stages if not suggest.categorical(f"stage.{st}", [True, False])}
        order = [self._stage(st, suggest) for st in order if st not in dropped]
        policy = Policy(tuple(subs), (), self.ranges, class_policies=groups).with_stages(order)
        policy = policy.canonical() if canonical else policy
        return policy if self.schedule is None else self.schedule.sample(policy, suggest)

    def random_policy(self, seed: int, num_classes: int = 0) -> Policy:
        """A policy drawn uniformly from the space (every parameter uniform over its choices):
        what a search has to beat. The same seed gives the same policy; ``meta`` records the
        seed and the space. ``num_classes``: a per-class space's number of classes.
        """
        # as drawn, not canonical: the recorded controls' digests name their rows in docs/*.csv
        policy = self.sample(RandomSuggest(seed), num_classes, canonical=False)
        return dataclasses.replace(policy, meta={"random_seed": seed, "search_space": self.name,
                                                 "search_space_hash": self.digest()})

    def _stage(self, name: str, suggest: Suggest):
        """A stage's name, or its Step at a searched level when it is in stage_magnitudes."""
        if name not in self.stage_magnitudes:
            return name
        level = suggest.categorical(f"stage.{name}.level", list(self.levels))
        return dataclasses.replace(STAGES[name], level=self._level(name, level))


def _number_list(value, key: str, lo: float, hi: float) -> tuple:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"'{key}' must be a non-empty list of numbers")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise ConfigError(f"'{key}' holds {v!r}, outside {lo:g}..{hi:g}")
    return tuple(value)


def _strength_range(value, key: str) -> tuple:
    """A multiplier: one number or [low, high], within 0..MAX_STRENGTH."""
    bounds = value if isinstance(value, list) else [value, value]
    if len(bounds) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in bounds) \
            or not 0 <= bounds[0] <= bounds[1] <= MAX_STRENGTH:
        raise ConfigError(f"'schedule.{key}' must be a strength multiplier or a range [low, high] within "
                          f"0..{MAX_STRENGTH:g}, got {value!r}")
    return float(bounds[0]), float(bounds[1])


def ramp_from_dict(d, stages: tuple) -> Ramp:
    """The `schedule:` of a search space; `stages` are the space's stages (what may be ramped)."""
    if not isinstance(d, dict):
        raise ConfigError("'schedule' must be a mapping, e.g. {kind: ramp, start: [0.0, 1.0], end: 1.0}")
    unknown = set(d) - {"kind", "start", "end", "shape", "scale", "ramped", "keyframes"}
    if unknown:
        raise ConfigError(f"unknown schedule keys: {', '.join(sorted(map(str, unknown)))} "
                          "(use kind, start, end, shape, scale, ramped, keyframes)")
    if d.get("kind", "ramp") != "ramp":
        raise ConfigError(f"'schedule.kind' must be ramp, got {d.get('kind')!r}")
    shapes = d.get("shape", ["linear"])
    shapes = [shapes] if isinstance(shapes, str) else shapes
    if not isinstance(shapes, list) or not shapes or len(set(map(str, shapes))) != len(shapes) \
            or any(s not in RAMP_SHAPES for s in shapes):
        raise ConfigError(f"'schedule.shape' must be one of {', '.join(RAMP_SHAPES)} or a list of them, "
                          f"got {d.get('shape')!r}")
    scale = d.get("scale", "both")
    if scale not in RAMP_SCALES:
        raise ConfigError(f"'schedule.scale' must be one of {', '.join(RAMP_SCALES)}, got {scale!r}")
    ramped = d.get("ramped", [POLICY_STAGE])
    if not isinstance(ramped, list) or not ramped or any(not isinstance(r, str) or r not in stages for r in ramped) \
            or len(set(ramped)) != len(ramped):
        raise ConfigError(f"'schedule.ramped' must list some of the space's stages ({', '.join(stages)}), "
                          f"got {ramped!r}")
    n = d.get("keyframes", 5)
    if isinstance(n, bool) or not isinstance(n, int) or not 3 <= n <= 11:
        raise ConfigError(f"'schedule.keyframes' must be an integer in 3..11, got {n!r}")
    return Ramp(start=_strength_range(d.get("start", [0.0, 1.0]), "start"),
                end=_strength_range(d.get("end", 1.0), "end"), shapes=tuple(shapes), scale=scale,
                ramped=tuple(ramped), keyframes=n)


def space_from_dict(d: dict, name: str = "") -> SearchSpace:
    known = {"kind", "ops", "sub_policies", "steps", "probabilities", "levels", "ranges", "stages",
             "search_order", "per_class", "optional_stages", "stage_magnitudes", "name", "schedule",
             "max_levels"}
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"unknown search-space keys: {', '.join(sorted(unknown))}")
    kind = d.get("kind", "autoaugment")
    if kind not in KINDS:
        raise ConfigError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
    op_list = d.get("ops", "autoaugment" if kind == "autoaugment" else "randaugment")
    if isinstance(op_list, str):
        if op_list not in _OP_SETS:
            raise ConfigError(f"'ops' names an unknown op set {op_list!r} (use {', '.join(_OP_SETS)} or a list)")
        op_list = _OP_SETS[op_list]
    if not isinstance(op_list, list) or not op_list:
        raise ConfigError("'ops' must be an op-set name or a non-empty list of ops")
    for op in op_list:
        if not isinstance(op, str) or op not in opspec.IMAGE_OPS:
            raise ConfigError(f"'ops' holds unknown or batch-only op {op!r}")
    stages = d.get("stages", [POLICY_STAGE, "flip", "crop"])
    if not isinstance(stages, list) or not all(isinstance(st, str) for st in stages) \
            or POLICY_STAGE not in stages or len(set(stages)) != len(stages):
        raise ConfigError("'stages' must list 'policy' once, plus any of flip, crop, cutout")
    for s in stages:
        if s != POLICY_STAGE and s not in STAGES:
            raise ConfigError(f"'stages' holds unknown stage {s!r} (use policy, {', '.join(STAGES)})")
    ints = {}
    for key, default in (("sub_policies", 5), ("steps", 2)):
        v = d.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 64:
            raise ConfigError(f"'{key}' must be an integer in 1..64, got {v!r}")
        ints[key] = v
    if kind == "randaugment" and ints["steps"] > 3:
        raise ConfigError("'steps' (RandAugment's largest N) must be at most 3")
    ranges = d.get("ranges", "wide" if kind == "trivialaugment" else "aa")
    if ranges not in ("aa", "wide"):
        raise ConfigError(f"'ranges' must be aa or wide, got {ranges!r}")
    search_order = d.get("search_order", True)
    if not isinstance(search_order, bool):
        raise ConfigError("'search_order' must be true or false")
    optional = d.get("optional_stages", [])
    if not isinstance(optional, list) or any(not isinstance(st, str) for st in optional) or any(st not in stages or st == POLICY_STAGE for st in optional):
        raise ConfigError("'optional_stages' must list stages of 'stages' other than 'policy'")
    magnitudes = d.get("stage_magnitudes", [])
    if not isinstance(magnitudes, list) or any(not isinstance(st, str) for st in magnitudes) or any(
            st not in stages or st == POLICY_STAGE or not opspec.OPS[STAGES[st].op].has_level
            for st in magnitudes):
        raise ConfigError("'stage_magnitudes' must list stages of 'stages' that have a level "
                          "(crop, cutout)")
    levels = _number_list(d.get("levels", list(SearchSpace.levels)), "levels", 0, opspec.MAX_LEVEL)
    if kind == "trivialaugment" and not any(lv > 0 for lv in levels):
        raise ConfigError("'levels' of a trivialaugment space needs a level above 0 (its searched "
                          "level cap), got " + str(list(levels)))
    if not isinstance(d.get("name", ""), (str, type(None))):
        raise ConfigError("'name' must be text")
    caps = d.get("max_levels", {})
    if not isinstance(caps, dict) or any(k not in op_list and k not in magnitudes for k in caps) or any(
            isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= opspec.MAX_LEVEL
            for v in caps.values()):
        raise ConfigError("'max_levels' must map ops of 'ops' or stages of 'stage_magnitudes' to a "
                          f"level in (0, 10], got {caps!r}")
    per_class = d.get("per_class", False)
    if not isinstance(per_class, bool):
        raise ConfigError("'per_class' must be true or false")
    if per_class and kind != "autoaugment":
        raise ConfigError("'per_class: true' needs kind: autoaugment")
    return SearchSpace(
        kind=kind, ops=tuple(op_list), ranges=ranges, stages=tuple(stages),
        search_order=search_order, per_class=per_class, optional_stages=tuple(optional),
        stage_magnitudes=tuple(magnitudes), name=d.get("name", name) or name,
        schedule=ramp_from_dict(d["schedule"], tuple(stages)) if d.get("schedule") is not None else None,
        probabilities=_number_list(d.get("probabilities", list(SearchSpace.probabilities)),
                                   "probabilities", 0.0, 1.0),
        levels=levels, max_levels=tuple((k, float(v)) for k, v in caps.items()), **ints)


def load_space(source) -> SearchSpace:
    """A search space from a YAML path or an inline mapping; errors name the file."""
    if isinstance(source, dict):
        return space_from_dict(source, "inline")
    import os
    name = os.path.splitext(os.path.basename(source))[0]
    try:
        return space_from_dict(read_yaml(source, "search-space"), name)
    except ConfigError as e:
        msg = str(e)
        raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None
