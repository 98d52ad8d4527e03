"""Screening: the search space narrowed by the data, before the search (``screen:``).

A model trains once on the clean train split (policy ``none``, ``screen.epochs`` epochs,
the experiment's seed). Then the first ``screen.images`` validation images are transformed,
every image, by the reference augmentation (``screen.reference``, e.g. ``standard``), by
each op of the space at each level of ``screen.levels`` in turn, and by each stage, and the
model classifies them. An op keeps its levels up to the last one at which the model still
recognises at least as many images as under the reference (the enhance ops, which do nothing
at level 5, are tried at distances from 5, both ways, and the worse side counts): no op may
move the data further from what the model learnt than the augmentation the user already
trusts does (the density argument of Fast AutoAugment, with the threshold taken from the
data instead of a constant).

- An op that fails at its lowest level leaves the space; the kept ones are capped one by
  one (`SearchSpace.max_levels`: a searched level l then means l/10 of the cap).
- A stage that fails leaves the space (e.g. flips on digits); one that passes becomes
  optional (``flip``) or keeps level 0 among its choices (crop, cutout: off), so the
  search can still switch every stage off.
- Everything is seeded, so a screen gives the same space on every CPU; the result is
  cached by what it depends on (a file lock: parallel workers of one host screen once).
"""
from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import time

import numpy as np

from ..config import ConfigError, Experiment
from ..data import cache_root
from ..files import atomic_write
from ..opspec import MAX_LEVEL, OPS
from ..policy import POLICY_STAGE, STAGES, Policy, Step, builtin
from .space import SearchSpace

CACHE_FORMAT = 2  # 2: the enhance ops are screened on both sides of their identity level


def screen_epochs(exp: Experiment) -> int:
    return exp.screen.epochs or max(1, exp.training.epochs // 4)


def screen_spec(exp: Experiment, space: SearchSpace, reference: Policy, num_classes: int) -> dict:
    """Everything a screen depends on; its hash names the cached result."""
    d = exp.data
    training = {k: v for k, v in exp.train_args(epochs=screen_epochs(exp)).items() if k != "validate_every"}
    return json.loads(json.dumps({
        "format": CACHE_FORMAT, "source": d.source, "n_train": d.n_train, "n_val": d.n_val,
        "split_seed": d.split_seed, "decoding": [d.image_size, d.resize, d.channels],
        "training": training, "images": exp.screen.images, "levels": list(exp.screen.levels),
        "reference": reference.digest(), "space": space.digest(), "num_classes": num_classes}, default=str))


def _passing(scores: list[tuple[float, float]], bar: float) -> float | None:
    """The highest level of the leading run of (level, accuracy) at or above `bar`."""
    cap = None
    for level, acc in scores:
        if acc < bar:
            break
        cap = level
    return cap


def _sides(op: str, severity: float, ranges: str) -> list[float]:
    """The levels at `severity` (0..10) from the op's identity: s itself for most ops; for the
    enhance ops (identity at level 5) both 5 - s/2 and 5 + s/2."""
    still = OPS[op].identity_level(ranges)
    up = still + (MAX_LEVEL - still) * severity / MAX_LEVEL
    return [up] if still == 0 else [still - still * severity / MAX_LEVEL, up]


class Screen:
    """Trains the clean model and scores transforms; `narrow` gives the screened space."""

    def __init__(self, exp: Experiment, arrays: tuple, num_classes: int):
        self.exp, self.arrays, self.num_classes = exp, arrays, num_classes
        n = min(exp.screen.images, len(arrays[3]))
        self.x, self.y = np.asarray(arrays[2][:n]), np.asarray(arrays[3][:n])  # decoded once, if streamed

    def _model(self):
        from ..train import train_model
        x_tr, y_tr = self.arrays[:2]
        _, net = train_model(x_tr, y_tr, self.x, self.y, builtin("none"), num_classes=self.num_classes,
                             return_model=True, **self.exp.train_args(epochs=screen_epochs(self.exp),
                                                                      validate_every=screen_epochs(self.exp)))
        return net

    def _accuracy(self, net, policy: Policy) -> float:
        from ..pipeline import augment_array
        images = augment_array(self.x, self.y, policy, seed=self.exp.seed, copy_index=0)
        probs = net.predict(images.astype(np.float32), batch_size=500, verbose=0)
        return float((np.asarray(probs).argmax(1) == self.y).mean())

    def run(self, space: SearchSpace, reference: Policy, log=print) -> dict:
        """The screen's table: clean, reference, and (level, accuracy) per op and per stage."""
        start, cpu = time.perf_counter(), time.process_time()
        net = self._model()
        clean = self._accuracy(net, builtin("none"))
        table = {"clean": clean, "reference": self._accuracy(net, reference), "ops": {}, "stages": {}}
        log(f"screen: clean model {clean:.1%} on {len(self.y)} validation "
            f"images, {table['reference']:.1%} under the reference; trying {len(space.ops)} ops")
        for op in space.ops:
            table["ops"][op] = self._scores(
                net, lambda lv: Policy(((Step(op, 1.0, lv),),), (POLICY_STAGE,), space.ranges), op,
                table["reference"], space.ranges)
        for st in space.stages:
            if st == POLICY_STAGE:
                continue
            grid = self.exp.screen.levels if st in space.stage_magnitudes else (STAGES[st].level,)
            table["stages"][st] = self._scores(
                net, lambda lv: Policy((), (dataclasses.replace(STAGES[st], level=float(lv)),), space.ranges),
                STAGES[st].op, table["reference"], space.ranges, grid)
        table.update(seconds=round(time.perf_counter() - start, 1), cpu_s=round(time.process_time() - cpu, 1))
        return table

    def _scores(self, net, make, op: str, bar: float, ranges: str, grid=None) -> list:
        """[severity, accuracy] from the lowest severity up to the first that fails the bar
        (an op without a level: one entry at 10); two-sided ops count their worse side."""
        scores = []
        grid = grid if grid is not None else self.exp.screen.levels
        for s in (grid if OPS[op].has_level else (MAX_LEVEL,)):
            acc = min(self._accuracy(net, make(lv)) for lv in _sides(op, float(s), ranges))
            scores.append([float(s), acc])
            if acc < bar:  # higher severities cannot be kept any more
                break
        return scores


def narrow(space: SearchSpace, table: dict) -> SearchSpace:
    """`space` with the ops and stages the screen kept, each capped at its last passing level."""
    bar = table["reference"]
    caps = {op: _passing(scores, bar) for op, scores in table["ops"].items()}
    ops = tuple(op for op in space.ops if caps.get(op) is not None)
    stage_caps = {st: _passing(scores, bar) for st, scores in table["stages"].items()}
    stages = tuple(st for st in space.stages if st == POLICY_STAGE or stage_caps.get(st) is not None)
    optional = tuple(st for st in stages if st != POLICY_STAGE and (
        st in space.optional_stages or st not in space.stage_magnitudes))
    magnitudes = tuple(st for st in space.stage_magnitudes if st in stages)
    max_levels = tuple((op, float(caps[op])) for op in ops if OPS[op].has_level and caps[op] < MAX_LEVEL) + tuple(
        (st, float(stage_caps[st])) for st in magnitudes if stage_caps[st] < MAX_LEVEL)
    return dataclasses.replace(space, ops=ops or ("Identity",), stages=stages, optional_stages=optional,
                               stage_magnitudes=magnitudes, max_levels=max_levels,
                               name=f"{space.name or 'inline'}-screened")


def table_text(table: dict, screened: SearchSpace) -> str:
    """The screen as a readable table: accuracy (%) per level tried, and what was kept."""
    caps = dict(screened.max_levels)
    lines = [f"clean {table['clean']:.1%}, reference {table['reference']:.1%} (the bar); Color, Contrast, "
             "Brightness and Sharpness: L is the distance from level 5, the worse side", "",
             f"{'op or stage':<14} {'accuracy at each level tried':<50} kept"]
    rows = [(name, scores, name in screened.ops) for name, scores in table["ops"].items()] + \
        [(name, scores, name in screened.stages) for name, scores in table["stages"].items()]
    for name, scores, kept in rows:
        tried = ", ".join(f"L{lv:g} {acc:.1%}" for lv, acc in scores)
        verdict = f"up to L{caps[name]:g}" if name in caps else "yes" if kept else "no"
        lines.append(f"{name:<14} {tried:<50} {verdict}")
    return "\n".join(lines)


def screened_space(exp: Experiment, space: SearchSpace, arrays: tuple, num_classes: int,
                   reference: Policy, log=print) -> tuple[SearchSpace, dict]:
    """(the narrowed space, the screen's table), from the cache or screened now."""
    if space.per_class or space.kind != "autoaugment":
        raise ConfigError(f"screen: search space {space.name or 'inline'} is {space.kind}"
                          f"{' per class' if space.per_class else ''}; a screen narrows kind: autoaugment spaces")
    spec = screen_spec(exp, space, reference, num_classes)
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = os.path.join(cache_root(), "screen", f"{key}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here while the first screens
        try:
            try:
                with open(path) as f:
                    saved = json.load(f)
                table = saved["table"] if saved.get("spec") == spec else None
            except (OSError, ValueError, KeyError):
                table = None
            if table is None:
                table = Screen(exp, arrays, num_classes).run(space, reference, log)
                atomic_write(path, json.dumps({"spec": spec, "table": table}, indent=1))
            else:
                log(f"screen: reusing {path}")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    narrowed = narrow(space, table)
    log(f"screen: kept {len(narrowed.ops)} of {len(space.ops)} ops, stages {', '.join(narrowed.stages)}; "
        f"caps {dict(narrowed.max_levels) or 'none'}")
    return narrowed, table
