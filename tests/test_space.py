"""Search spaces: what a sample of each option turns into (no training)."""
from pathlib import Path

import pytest

from autoaug import Policy
from autoaug.config import ConfigError, load_experiment
from autoaug.search import load_space
from autoaug.search.space import space_from_dict


class FirstChoice:
    """A Suggest that answers every question with the first choice, except those in `answers`."""

    def __init__(self, **answers):
        self.answers, self.asked = answers, []

    def categorical(self, name, choices):
        self.asked.append(name)
        return self.answers.get(name, choices[0])

    def int(self, name, low, high):
        self.asked.append(name)
        return self.answers.get(name, low)

    def float(self, name, low, high):
        self.asked.append(name)
        return self.answers.get(name, low)


BASE = {"kind": "autoaugment", "ops": ["Rotate", "Invert"], "sub_policies": 2, "steps": 1,
        "stages": ["policy", "flip", "crop", "cutout"], "search_order": False}


def test_optional_stages_can_be_switched_off_and_keep_old_digests():
    space = space_from_dict({**BASE, "optional_stages": ["cutout", "flip"]})
    on = space.sample(FirstChoice())
    assert [getattr(s, "op", s) for s in on.stages] == ["policy", "FlipLR", "PadCrop", "Cutout"]
    off = space.sample(FirstChoice(**{"stage.cutout": False}))
    assert [getattr(s, "op", s) for s in off.stages] == ["policy", "FlipLR", "PadCrop"]
    assert space_from_dict(BASE).to_dict() == {k: v for k, v in space.to_dict().items() if k != "optional_stages"}
    assert "optional_stages" not in space_from_dict(BASE).to_dict()  # old spaces keep their digest


@pytest.mark.parametrize("bad", [["policy"], ["mixup"], "cutout"])
def test_optional_stages_must_be_listed_stages(bad):
    with pytest.raises(ConfigError, match="'optional_stages' must list stages"):
        space_from_dict({**BASE, "optional_stages": bad})


def test_stage_magnitudes_search_the_stage_level_and_keep_old_digests():
    space = space_from_dict({**BASE, "levels": [0, 3, 8], "stage_magnitudes": ["crop", "cutout"]})
    suggest = FirstChoice(**{"stage.cutout.level": 3})
    policy = space.sample(suggest)
    assert {"stage.crop.level", "stage.cutout.level"} <= set(suggest.asked)
    assert "stage.flip.level" not in suggest.asked
    crop, cutout = policy.stages[2], policy.stages[3]
    assert (crop.op, crop.p, crop.level) == ("PadCrop", 1.0, 0.0)
    assert (cutout.op, cutout.p, cutout.level) == ("Cutout", 1.0, 3.0)
    assert "stage_magnitudes" not in space_from_dict(BASE).to_dict()
    assert space.digest() != space_from_dict({**BASE, "levels": [0, 3, 8]}).digest()


@pytest.mark.parametrize("bad", [["flip"], ["policy"], ["mixup"], "crop"])
def test_stage_magnitudes_must_be_listed_stages_with_a_level(bad):
    with pytest.raises(ConfigError, match="'stage_magnitudes' must list stages"):
        space_from_dict({**BASE, "stage_magnitudes": bad})


def test_per_class_space_samples_one_group_per_class():
    space = space_from_dict({**BASE, "per_class": True})
    suggest = FirstChoice(**{"c2.sp1.step0.op": "Invert", "c2.sp1.step0.p": 0.5})
    policy = space.sample(suggest, num_classes=3)
    assert policy.per_class and not policy.sub_policies
    assert [g.classes for g in policy.class_policies] == [(0,), (1,), (2,)]
    assert policy.class_policies[2].sub_policies[1][0].op == "Invert"
    assert {"c0.sp0.step0.op", "c2.sp1.step0.level"} <= set(suggest.asked)
    with pytest.raises(ConfigError, match="number of classes"):
        space.sample(FirstChoice())


def test_spellings_of_one_augmentation_sample_as_one_policy():
    """A step that never runs (p=0) and the level of an op without magnitude do not change the
    pixels: the sampled policies are the same policy (one digest, one training)."""
    space = space_from_dict(BASE)  # ops Rotate and Invert
    a = space.sample(FirstChoice(**{"sp0.step0.op": "Rotate", "sp1.step0.op": "Invert", "sp1.step0.p": 0.3}))
    b = space.sample(FirstChoice(**{"sp0.step0.op": "Invert", "sp1.step0.op": "Invert", "sp1.step0.p": 0.3,
                                    "sp1.step0.level": 7}))
    assert a == b and a.digest() == b.digest()
    assert [str(sp[0]) for sp in a.sub_policies] == ["Identity p=0 L=0", "Invert p=0.3 L=0"]
    c = space.sample(FirstChoice(**{"sp0.step0.op": "Rotate", "sp0.step0.p": 0.3, "sp1.step0.op": "Invert",
                                    "sp1.step0.p": 0.3}))
    assert c.digest() != a.digest()  # a step that runs keeps its op


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_experiments_and_their_spaces_load(path):
    cfg = load_experiment(str(path))
    space = load_space(cfg.space_source)
    assert space.digest() and cfg.n_trials > len(cfg.baselines)


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_load(path):
    assert load_space(str(path)).name == path.stem


@pytest.mark.parametrize("path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_random_policies_are_reproducible_distinct_and_valid(path):
    space = load_space(str(path))
    draws = [space.random_policy(seed, num_classes=10) for seed in (1001, 1002, 1003)]
    assert [p.digest() for p in draws] == [space.random_policy(s, num_classes=10).digest() for s in (1001, 1002, 1003)]
    assert len({p.digest() for p in draws}) == 3
    for policy in draws:
        policy.validate()
        assert Policy.from_json(policy.to_json()).digest() == policy.digest()
        assert policy.meta["random_seed"] in (1001, 1002, 1003) and policy.meta["search_space_hash"] == space.digest()


def test_random_controls_keep_the_policies_of_the_recorded_bench_rows():
    # scripts/bench_policies.py draws random-i with seed 1000 + i; these digests are the
    # policy_hash of the random-i rows in docs/bench_policies.csv and bench_policies_random_light.csv
    aa, light = (load_space(str(ROOT / "search_spaces" / f"{n}.yaml")) for n in ("autoaugment", "autoaugment_light"))
    assert [aa.random_policy(1000 + i).digest() for i in (1, 2, 3)] == ["5b0b7512829a", "50b097e14bf3", "f8f5c032ec61"]
    assert [light.random_policy(1000 + i).digest() for i in (1, 2)] == ["80fcac7c392f", "0c08ef165305"]
