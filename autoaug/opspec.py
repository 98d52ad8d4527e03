"""The table of ops and what their levels mean, as plain data (no TensorFlow).

``TABLE`` is the single place that answers "what does Rotate at level 7 mean?":
each op declares the parameter it takes, its value at level 0 and level 10 for
AutoAugment semantics (``aa``) and for TrivialAugment-Wide (``wide``), whether a
random sign reflects it around the identity value, and whether its magnitude is
truncated to an integer (AutoAugment's ``int_parameter``). Severity grows as the
parameter moves away from ``identity``; ``OpSpec.severity`` states the direction.

Policies, search spaces and the CLI read this module; the TensorFlow kernels that
implement each op live in ``autoaug.ops`` (``ops.KERNELS``), which re-exports it.
docs/ops.md has the table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MAX_LEVEL = 10.0
RANGES = ("aa", "wide")  # AutoAugment semantics, TrivialAugment-Wide ranges
# Integer parameters keep whole steps of magnitude: a magnitude within this of the next
# integer is float error (e.g. level 10/6 on a 6-step range), not a fraction to drop.
INT_EPS = 1e-3


class OpError(ValueError):
    """A user asked for an op or a level that does not exist."""


def _check_ranges(ranges: str) -> None:
    if ranges not in RANGES:
        raise OpError(f"unknown magnitude ranges {ranges!r}: use 'aa' or 'wide'")


@dataclass(frozen=True)
class OpSpec:
    """One op: what its level means.

    ``aa`` and ``wide`` are the parameter at level 0 and at level 10. With ``signed``,
    a random sign per image reflects the parameter around ``identity``.
    """

    name: str
    param: str = ""
    identity: float = 0.0
    aa: tuple[float, float] = (0.0, 0.0)
    wide: tuple[float, float] | None = None
    signed: bool = False
    integer: bool = False
    random: bool = False  # uses its key (draws per image)
    kind: str = "photometric"  # photometric | geometric | batch

    @property
    def has_level(self) -> bool:
        return self.aa[0] != self.aa[1]

    @property
    def wide_range(self) -> tuple[float, float]:
        return self.wide if self.wide is not None else self.aa

    @property
    def severity(self) -> str:
        lo, hi = self.aa
        if not self.has_level:
            return "no level"
        if min(lo, hi) < self.identity < max(lo, hi):
            return "both ways from level 5 (identity at 5)"
        return "grows with level"

    def identity_level(self, ranges: str = "aa") -> float:
        """The level at which the op does nothing: 0, or 5 for AutoAugment's enhance ops.

        >>> OPS["Contrast"].identity_level(), OPS["Contrast"].identity_level("wide"), OPS["Rotate"].identity_level()
        (5.0, 0.0, 0.0)
        """
        lo, hi = self.aa if ranges == "aa" else self.wide_range
        return 0.0 if lo == hi else round((self.identity - lo) / (hi - lo) * MAX_LEVEL, 6)

    def param_at(self, level: float, ranges: str = "aa") -> float:
        """The parameter at ``level`` (positive sign).

        Integer ops truncate the *magnitude* (the distance from ``identity``), as
        AutoAugment's ``int_parameter`` does: Solarize at level 3 is 256 - int(76.8) = 180,
        Posterize at level 3 is 8 - int(1.2) = 7 bits.

        >>> OPS["Solarize"].param_at(3), OPS["Posterize"].param_at(3), OPS["Rotate"].param_at(7)
        (180.0, 7.0, 21.0)
        >>> OPS["Rotate"].param_at(7, "wide")
        94.5
        """
        _check_ranges(ranges)
        lo, hi = self.aa if ranges == "aa" else self.wide_range
        value = lo + (hi - lo) * float(level) / MAX_LEVEL
        if not self.integer:
            return value
        delta = value - self.identity
        return self.identity + math.copysign(math.floor(abs(delta) + INT_EPS), delta)


_ENH = dict(param="factor", identity=1.0, aa=(0.1, 1.9), wide=(1.0, 1.99), signed=False)
# Enhance ops: AutoAugment spans 0.1..1.9 unsigned (identity at level 5);
# TrivialAugment-Wide spans 1 +- 0.99 with a random sign (see OPS_WIDE_SIGNED).

TABLE: list[OpSpec] = [
    OpSpec("Identity"),
    OpSpec("AutoContrast"),
    OpSpec("Equalize"),
    OpSpec("Invert"),
    OpSpec("Rotate", "degrees", 0.0, (0.0, 30.0), (0.0, 135.0), signed=True, kind="geometric"),
    OpSpec("Solarize", "threshold", 256.0, (256.0, 0.0), (256.0, 0.0), integer=True),
    OpSpec("SolarizeAdd", "addition", 0.0, (0.0, 110.0), integer=True),
    OpSpec("Posterize", "bits", 8.0, (8.0, 4.0), (8.0, 2.0), integer=True),
    OpSpec("Color", **_ENH),
    OpSpec("Contrast", **_ENH),
    OpSpec("Brightness", **_ENH),
    OpSpec("Sharpness", **_ENH),
    OpSpec("ShearX", "shear", 0.0, (0.0, 0.3), (0.0, 0.99), signed=True, kind="geometric"),
    OpSpec("ShearY", "shear", 0.0, (0.0, 0.3), (0.0, 0.99), signed=True, kind="geometric"),
    OpSpec("TranslateX", "fraction of width", 0.0, (0.0, 10 / 32), (0.0, 1.0),
           signed=True, kind="geometric"),
    OpSpec("TranslateY", "fraction of height", 0.0, (0.0, 10 / 32), (0.0, 1.0),
           signed=True, kind="geometric"),
    OpSpec("Cutout", "fraction of side", 0.0, (0.0, 20 / 32), random=True, kind="geometric"),
    OpSpec("FlipLR", kind="geometric"),
    OpSpec("FlipUD", kind="geometric"),
    OpSpec("PadCrop", "pad, fraction of side", 0.0, (0.0, 0.25), random=True, kind="geometric"),
    OpSpec("GaussianNoise", "sigma (0..255 units)", 0.0, (0.0, 25.5), (0.0, 51.0), random=True),
    OpSpec("Hue", "turns of the hue circle", 0.0, (0.0, 0.2), (0.0, 0.5), signed=True),
    OpSpec("Saturation", "factor", 1.0, (1.0, 2.0), (1.0, 2.0), signed=True),
    OpSpec("MixUp", "Beta alpha", 0.0, (0.0, 1.0), random=True, kind="batch"),
    OpSpec("CutMix", "Beta alpha", 0.0, (0.0, 1.0), random=True, kind="batch"),
]
OPS: dict[str, OpSpec] = {spec.name: spec for spec in TABLE}
OP_NAMES: list[str] = [spec.name for spec in TABLE]
OP_INDEX: dict[str, int] = {name: i for i, name in enumerate(OP_NAMES)}
# Ops that a sub-policy may use: everything that works image by image.
IMAGE_OPS: list[str] = [s.name for s in TABLE if s.kind != "batch"]
BATCH_OPS: list[str] = [s.name for s in TABLE if s.kind == "batch"]
# TrivialAugment-Wide draws a random sign for the enhance ops (1 +- delta).
OPS_WIDE_SIGNED = {"Color", "Contrast", "Brightness", "Sharpness"}

# The AutoAugment paper's search space (16 ops) and RandAugment's 14.
AUTOAUGMENT_OPS = ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "AutoContrast",
                   "Invert", "Equalize", "Solarize", "Posterize", "Contrast", "Color",
                   "Brightness", "Sharpness", "Cutout", "SolarizeAdd"]
RANDAUGMENT_OPS = ["Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color",
                   "Posterize", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateX", "TranslateY"]
TRIVIALAUGMENT_OPS = RANDAUGMENT_OPS


def range_rows(ranges: str = "aa") -> list[list[float]]:
    """Per op in ``TABLE`` order: [lo, hi, signed, identity, integer] under ``ranges``."""
    _check_ranges(ranges)
    rows = []
    for spec in TABLE:
        lo, hi = spec.aa if ranges == "aa" else spec.wide_range
        signed = spec.signed or (ranges == "wide" and spec.name in OPS_WIDE_SIGNED)
        rows.append([lo, hi, float(signed), spec.identity, float(spec.integer)])
    return rows


def get_op(name: str) -> OpSpec:
    try:
        return OPS[name]
    except KeyError:
        raise OpError(f"unknown op {name!r}; known ops: {', '.join(OP_NAMES)}") from None
