"""The screen: a search space narrowed by the data before the search (autoaug.search.screen)."""
import json
import os

import pytest

from autoaug.config import ConfigError, load_experiment
from autoaug.search.screen import narrow, screened_space
from autoaug.search.space import load_space, space_from_dict
from autoaug.policy import builtin

LIGHT = {"kind": "autoaugment", "ops": ["ShearY", "Color", "Invert", "AutoContrast"], "sub_policies": 1,
         "steps": 1, "probabilities": [0.0, 0.5], "levels": [0, 5, 10], "stages": ["policy", "flip", "crop", "cutout"],
         "search_order": False, "stage_magnitudes": ["crop", "cutout"], "name": "t"}


class Fixed:
    """A Suggest that answers each parameter with a given value (else the last choice)."""

    def __init__(self, **answers):
        self.answers = answers

    def categorical(self, name, choices):
        value = self.answers.get(name.replace(".", "_"), choices[-1])
        assert value in choices, (name, value, choices)
        return value


def table(ops, stages, reference=0.60):
    return {"clean": 0.70, "reference": reference, "ops": ops, "stages": stages}


def test_narrow_keeps_the_leading_passing_levels_of_each_op_and_drops_failures():
    space = space_from_dict(LIGHT, "t")
    t = table(ops={"ShearY": [[2, 0.69], [4, 0.65], [6, 0.59]],  # passes 2 and 4: cap 4
                   "Color": [[2, 0.70], [4, 0.70], [6, 0.68], [8, 0.66], [10, 0.61]],  # every level: no cap
                   "Invert": [[10, 0.20]],  # fails: out
                   "AutoContrast": [[10, 0.60]]},  # exactly the reference: kept
              stages={"flip": [[10, 0.66]], "crop": [[2, 0.64], [4, 0.58]], "cutout": [[2, 0.55]]})
    screened = narrow(space, t)
    assert screened.ops == ("ShearY", "Color", "AutoContrast")
    assert screened.stages == ("policy", "flip", "crop")  # cutout fails at its lowest level
    assert screened.optional_stages == ("flip",)  # the search may still switch the flip off
    assert screened.stage_magnitudes == ("crop",)  # level 0 stays among crop's choices: off
    assert dict(screened.max_levels) == {"ShearY": 4, "crop": 2}
    assert screened.name == "t-screened"
    # the written space reads back as the same space (it is data, like every space)
    assert space_from_dict(screened.to_dict()).digest() == screened.digest()


def test_a_level_that_fails_ends_the_op_even_if_a_higher_one_passes_again():
    space = space_from_dict(LIGHT, "t")
    t = table(ops={"ShearY": [[2, 0.70], [4, 0.50], [6, 0.65]], "Color": [[2, 0.1]], "Invert": [[10, 0.1]],
                   "AutoContrast": [[10, 0.1]]}, stages={"flip": [[10, 0.5]], "crop": [[2, 0.1]], "cutout": [[2, 0.1]]})
    screened = narrow(space, t)
    assert screened.ops == ("ShearY",) and dict(screened.max_levels) == {"ShearY": 2}
    assert screened.stages == ("policy",)  # a flip that confuses the model leaves the space (digits)


def test_nothing_passes_leaves_identity_so_the_search_can_only_choose_no_augmentation():
    space = space_from_dict(LIGHT, "t")
    fail = [[2, 0.0]]
    screened = narrow(space, table(ops={op: fail for op in LIGHT["ops"]},
                                   stages={"flip": fail, "crop": fail, "cutout": fail}))
    assert screened.ops == ("Identity",) and screened.stages == ("policy",)
    policy = screened.sample(Fixed())
    assert [s.op for sp in policy.sub_policies for s in sp] == ["Identity"] and policy.stages == ("policy",)


def test_a_searched_level_means_a_fraction_of_the_op_or_stage_cap():
    space = space_from_dict({**LIGHT, "max_levels": {"ShearY": 4, "crop": 6}}, "t")
    policy = space.sample(Fixed(sp0_step0_op="ShearY", sp0_step0_p=0.5, sp0_step0_level=5, stage_crop_level=10,
                                stage_cutout_level=5))
    (step,), = policy.sub_policies
    assert (step.op, step.level) == ("ShearY", 2.0)  # 5/10 of 4
    levels = {s.op: s.level for s in policy.stages if not isinstance(s, str)}
    assert levels["PadCrop"] == 6.0 and levels["Cutout"] == 5.0  # cutout has no cap: as searched
    uncapped = space_from_dict(LIGHT, "t").sample(Fixed(sp0_step0_op="ShearY", sp0_step0_level=5))
    assert uncapped.sub_policies[0][0].level == 5.0


def test_an_enhance_op_is_screened_and_capped_around_its_identity_at_level_5():
    from autoaug.search.screen import _sides
    assert _sides("Contrast", 4.0, "aa") == [3.0, 7.0] and _sides("Contrast", 10.0, "aa") == [0.0, 10.0]
    assert _sides("Contrast", 4.0, "wide") == [4.0] and _sides("Rotate", 4.0, "aa") == [4.0]
    space = space_from_dict({**LIGHT, "ops": ["Contrast"], "max_levels": {"Contrast": 4}}, "t")
    level = {lv: space.sample(Fixed(sp0_step0_level=lv)).sub_policies[0][0].level for lv in (0, 5, 10)}
    assert level == {0: 3.0, 5: 5.0, 10: 7.0}  # within 2 levels of doing nothing, both ways


@pytest.mark.parametrize("caps, why", [({"Rotate": 3}, "not an op of the space"), ({"ShearY": 0}, "level 0"),
                                       ({"ShearY": 11}, "above 10"), ({"flip": 3}, "not a searched stage"),
                                       (["ShearY"], "not a mapping")])
def test_bad_max_levels_is_one_line_naming_the_key(caps, why):
    with pytest.raises(ConfigError, match="'max_levels' must map ops"):
        space_from_dict({**LIGHT, "max_levels": caps}, "t")


@pytest.mark.parametrize("override, message", [
    ("screen.levels=[4, 2]", "'screen.levels' must be increasing levels in \\(0, 10\\]"),
    ("screen.levels=[0, 5]", "'screen.levels' must be increasing"),
    ("screen.images=0", "'screen.images' must be a positive integer"),
    ("screen.epochs=-1", "'screen.epochs' must be a positive integer or null"),
    ("screen.reference=''", "'screen.reference' must name a built-in policy"),
    ("training.validate_every=0", "'training.validate_every' must be a positive integer"),
])
def test_bad_screen_settings_are_one_line(override, message):
    with pytest.raises(ConfigError, match=message):
        load_experiment(None, [override])


def test_validate_every_reaches_training_only_when_set():
    from autoaug.evaluate import setting_key
    from autoaug.search.density import models_spec
    every, fifth = load_experiment(None), load_experiment(None, ["training.validate_every=5"])
    assert "validate_every" not in every.train_args()  # earlier runs' settings unchanged
    assert fifth.train_args()["validate_every"] == 5
    assert models_spec(every, 10) == models_spec(fifth, 10)  # the same density models either way
    assert setting_key(every) == setting_key(fifth)  # evaluate's finished runs count for both


def _exp(tmp_path, *extra):
    return load_experiment(None, ["name=screen", "data.n_train=120", "data.n_val=60", "training.epochs=2",
                                  "training.batch_size=32", "model.name=cnn-small", "screen.reference=standard",
                                  "screen.epochs=1", "screen.images=40", "screen.levels=[3, 10]",
                                  f"search_space={os.path.abspath('search_spaces/autoaugment_light.yaml')}",
                                  f"tracking_uri=sqlite:///{tmp_path}/mlflow.db", *extra])


def test_screen_on_real_digits_is_cached_and_gives_the_same_space_again(tmp_path, fresh_data_cache):
    from autoaug.data import load_experiment_data
    from autoaug.labels import forbidden_ops, policy_for
    exp = _exp(tmp_path)
    space = load_space(exp.space_source).honouring(forbidden_ops(exp))
    ds, arrays = load_experiment_data(exp)
    reference = policy_for("standard", forbidden_ops(exp))
    lines = []
    first, t = screened_space(exp, space, arrays, ds.num_classes, reference, log=lines.append)
    assert set(t["ops"]) == set(space.ops) and "FlipLR" not in space.ops  # digits: no flips to screen
    assert 0 <= t["reference"] <= 1 and t["cpu_s"] > 0
    for scores in t["ops"].values():  # every op tried from its lowest level until one fails
        assert [lv for lv, _ in scores] in ([3.0], [3.0, 10.0], [10.0])
    assert set(first.ops) <= set(space.ops) and first.ops
    assert not any(line.startswith("screen: reusing") for line in lines)
    again, t2 = screened_space(exp, space, arrays, ds.num_classes, reference, log=lines.append)
    assert lines[-2].startswith("screen: reusing") and again == first and t2 == t
    cached, = [f for f in os.listdir(os.path.join(os.environ["AUTOAUG_CACHE"], "screen")) if f.endswith(".json")]
    assert json.load(open(os.path.join(os.environ["AUTOAUG_CACHE"], "screen", cached)))["table"] == t
    # another reference is another screen, not the cached one
    _, t3 = screened_space(exp, space, arrays, ds.num_classes, builtin("none"), log=lines.append)
    assert not lines[-2].startswith("screen: reusing") and t3["reference"] == t3["clean"]


def test_a_search_with_a_screen_searches_the_screened_space_and_logs_it(tmp_path, fresh_data_cache):
    from autoaug.search import run_search
    exp = _exp(tmp_path, "n_trials=2", "baselines=[standard]", "driver.pruner=none", "training.validate_every=2")
    ctx, frame = run_search(exp, progress=False, log=lambda line: None)
    assert list(frame["state"]) == ["complete", "complete"]
    assert ctx.space.name == "autoaugment_light-screened"
    searched = frame[frame["baseline"] == ""].iloc[0]
    ops = {s.op for sp in ctx.outcomes[-1].policy.sub_policies for s in sp if s.p > 0}  # p=0: canonical Identity
    assert ops <= set(ctx.space.ops), (ops, searched)
    logged = json.loads(ctx.tracker.read_text(ctx.tracker.parent_id, "search_space.json"))
    assert logged == ctx.space.to_dict()  # the parent run holds the space that was searched
    assert json.loads(ctx.tracker.read_text(ctx.tracker.parent_id, "screen.json")) == ctx.screen
    parent = ctx.tracker.parent_id
    assert ctx.track(parent_id=parent) == parent  # a second worker adopts the parent ...
    history = ctx.tracker.client.get_metric_history(parent, "screen_cpu_s")
    assert len(history) == 1  # ... and logs the screen no second time


def test_an_unknown_screen_reference_stops_the_search_before_anything_is_written(tmp_path, fresh_data_cache):
    from autoaug.policy import PolicyError
    from autoaug.search import run_search
    with pytest.raises((PolicyError, ConfigError), match="nonesuch"):
        run_search(_exp(tmp_path, "screen.reference=nonesuch", "n_trials=1"), progress=False, log=lambda line: None)
    assert not os.path.exists(tmp_path / "mlflow.db")
    assert not os.path.exists(os.path.join(os.environ["AUTOAUG_CACHE"], "screen"))


def test_the_screen_command_prints_why_and_writes_a_space_that_loads(tmp_path, fresh_data_cache, capsys):
    from autoaug.cli import main
    exp = tmp_path / "exp.yaml"
    exp.write_text("data: {n_train: 120, n_val: 60}\nmodel: {name: cnn-small}\ntraining: {epochs: 1, batch_size: 32}\n"
                   f"search_space: {os.path.abspath('search_spaces/autoaugment_light.yaml')}\n"
                   "screen: {epochs: 1, images: 40, levels: [5, 10]}\n")
    out = tmp_path / "space.yaml"
    assert main(["screen", str(exp), "--reference", "standard", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "(the bar)" in printed and "ShearY" in printed and "L5 " in printed
    space = load_space(str(out))
    assert space.name == "autoaugment_light-screened" and set(space.ops) <= set(load_space(
        "search_spaces/autoaugment_light.yaml").ops)
    # without a reference there is nothing to screen: one line, exit 2, no file
    out.unlink()
    assert main(["screen", str(exp)]) == 2
    assert "no screen to run: give --reference standard" in capsys.readouterr().err
    assert not out.exists()
