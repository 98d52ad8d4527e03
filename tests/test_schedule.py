"""Schedules: a policy that changes over training (issue 16, items 1 and 2).

JSON v2 round trip and v1 files; the numbers the graph uses and the pixels it makes at a point
of training are `Policy.at`'s; one trace across epochs and schedules; one-line errors; the
training pipeline replays a schedule; ramp search spaces under both drivers.
"""
import json
import types

import numpy as np
import pytest
import tensorflow as tf
from mlflow.tracking import MlflowClient

import autoaug
from autoaug import augment, cli, tracking
from autoaug.augment import PolicyLayer, ScheduleProgress, policy_tensors, tables_at
from autoaug.config import ConfigError, load_experiment
from autoaug.pipeline import train_dataset
from autoaug.policy import ClassPolicy, Policy, PolicyError, Schedule, Step, builtin
from autoaug.search import run_search
from autoaug.search.space import RandomSuggest, load_space, space_from_dict
from helpers import ROOT, tiny_overrides

RAMP_SPACE = str(ROOT / "search_spaces" / "autoaugment_light_ramp.yaml")


def _policy(*rows, stages=("policy", "crop")):
    """Sub-policies from (op, p, level) rows of steps, then `stages`."""
    subs = tuple(tuple(Step(op, p, float(lv)) for op, p, lv in row) for row in rows)
    return Policy(subs).with_stages(list(stages))


MILD = _policy([("Rotate", 0.2, 1), ("ShearX", 0.1, 2)], [("Color", 0.5, 3), ("Invert", 0.3, 0)])
WILD = _policy([("Rotate", 0.9, 9), ("ShearX", 0.7, 8)], [("Color", 0.6, 10), ("Invert", 0.8, 0)],
               stages=("policy", Step("PadCrop", 1.0, 9.0)))
OTHER = _policy([("Equalize", 1.0, 0), ("TranslateY", 0.5, 7)], [("Solarize", 0.4, 6), ("Posterize", 0.9, 4)],
                [("Contrast", 0.8, 8), ("Sharpness", 0.2, 1)], stages=("policy", Step("PadCrop", 0.5, 2.0)))
LINEAR = Policy.scheduled([(0.0, MILD), (0.4, WILD), (1.0, MILD)], mode="linear", name="up-down")
STEP = Policy.scheduled([(0.0, MILD), (0.25, OTHER), (0.75, WILD)], mode="step", name="pba")


@pytest.fixture(scope="module")
def images(digits):
    return digits[0][:24]


# ---------------------------------------------------------------------------- JSON

@pytest.mark.parametrize("policy", [LINEAR, STEP], ids=["linear", "step"])
def test_schedule_round_trips_through_json(policy, tmp_path):
    d = json.loads(policy.to_json())
    assert d["schema_version"] == 2 and d["schedule"]["mode"] == policy.schedule.mode
    assert [kf["at"] for kf in d["schedule"]["keyframes"]] == [at for at, _ in policy.schedule.keyframes]
    assert d["sub_policies"] == d["schedule"]["keyframes"][0]["sub_policies"]  # the start of training
    again = Policy.from_json(policy.to_json())
    assert again == policy and again.digest() == policy.digest() and again.name == policy.name
    path = tmp_path / "schedule.json"
    policy.save(str(path))
    assert autoaug.load_policy(str(path)) == policy
    # the schedule is part of the augmentation: another one is another digest
    moved = Policy.scheduled([(0.0, MILD), (0.5, WILD), (1.0, MILD)], mode="linear", name="up-down")
    assert moved != policy and moved.digest() != LINEAR.digest()
    assert Policy.scheduled(LINEAR.schedule.keyframes, "step").digest() != LINEAR.digest()
    assert MILD.digest() == Policy.from_json(MILD.to_json()).digest()


def test_policies_without_schedule_stay_version_1_and_old_files_load():
    assert json.loads(builtin("standard").to_json())["schema_version"] == 1
    v1 = {"schema_version": 1, "name": "old", "ranges": "aa", "stages": ["policy", "flip"],
          "sub_policies": [[{"op": "Rotate", "p": 0.5, "level": 3}, ["Color", 0.2, 7]]]}
    old = Policy.from_json(json.dumps(v1))
    assert old.schedule is None and old.sub_policies == ((Step("Rotate", 0.5, 3.0), Step("Color", 0.2, 7.0)),)
    unversioned = {k: v for k, v in v1.items() if k != "schema_version"}
    assert Policy.from_json(json.dumps(unversioned)) == old
    # a hand-written v2 file may leave the top-level stages out: they are keyframe 0's
    hand = {"schema_version": 2, "name": "ramp", "schedule": {"mode": "linear", "keyframes": [
        {"at": 0, "sub_policies": [[["Rotate", 0.1, 1]]]}, {"at": 1, "sub_policies": [[["Rotate", 0.9, 9]]]}]}}
    ramp = Policy.from_json(json.dumps(hand))
    assert ramp.sub_policies == ((Step("Rotate", 0.1, 1.0),),) and len(ramp.schedule.keyframes) == 2
    assert str(ramp.at(0.5).sub_policies[0][0]) == "Rotate p=0.5 L=5"


# ---------------------------------------------------------------------------- errors

def _file(mode="linear", frames=((0, "Rotate", 0.1, 1), (1, "Rotate", 0.9, 9)), version=2, **top):
    keyframes = [{"at": at, "sub_policies": [[[op, p, lv]]]} for at, op, p, lv in frames]
    return json.dumps({"schema_version": version, "schedule": {"mode": mode, "keyframes": keyframes}, **top})


BAD = [
    (_file(frames=((0, "Rotate", 0.1, 1), (0.5, "Rotate", 0.5, 5), (0.3, "Rotate", 0.9, 9))),
     "schedule keyframe 2 at 0.3 comes before keyframe 1 at 0.5: fractions must increase"),
    (_file(frames=((0, "Rotate", 0.1, 1), (0, "Rotate", 0.9, 9))), "comes at the same time as keyframe 0"),
    (_file(frames=((0.2, "Rotate", 0.1, 1), (1, "Rotate", 0.9, 9))),
     "schedule keyframe 0 is at 0.2: the first keyframe must be at 0"),
    (_file(frames=((0, "Rotate", 0.1, 1), (1.5, "Rotate", 0.9, 9))), "schedule keyframe 1 at 1.5 is outside [0, 1]"),
    (_file(frames=((0, "Rotate", 0.1, 1), (1, "Rotate", 0.9, 12))),
     "schedule keyframe 1: sub-policy 0 step 0: level 12.0 for Rotate is outside 0..10"),
    (_file(frames=((0, "Rotate", 0.1, 1), (1, "ShearX", 0.9, 9))),
     "linear schedule keyframe 1: sub-policy 0 step 0 is ShearX, in keyframe 0 Rotate; a linear schedule "
     "changes only p and level (use mode step to change ops)"),
    (_file(mode="ramp"), "schedule mode must be linear or step, got 'ramp'"),
    (_file(version=1), "'schedule' needs schema_version 2, the file says 1"),
    (_file(stages=["flip"]), "the top-level 'stages' differ from schedule keyframe 0's"),
    (json.dumps({"schema_version": 2, "schedule": {"mode": "step", "keyframes": []}}), "non-empty list"),
    (json.dumps({"schema_version": 2, "schedule": {"mode": "step", "keyframes": [{"sub_policies": []}]}}),
     "schedule keyframe 0: missing 'at'"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_schedules_give_one_line(text, message):
    with pytest.raises(PolicyError) as e:
        Policy.from_json(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_schedules_built_in_python_give_one_line():
    one_step = _policy([("Rotate", 0.5, 3)])
    with pytest.raises(PolicyError, match=r"^step schedule keyframe 1 is policy \(1 step\) > PadCrop, keyframe 0 "
                                          r"is policy \(2 steps\) > PadCrop: every keyframe needs the same stages"):
        Policy.scheduled([(0.0, MILD), (0.5, one_step)], mode="step")
    with pytest.raises(PolicyError, match="linear schedule keyframe 1: the number of sub-policies is 3, in keyframe 0 2"):
        Policy.scheduled([(0.0, MILD), (0.5, OTHER)], mode="linear")
    with pytest.raises(PolicyError, match="schedule keyframe 1 has ranges wide, keyframe 0 has aa"):
        Policy.scheduled([(0.0, MILD), (0.5, Policy(MILD.sub_policies, MILD.stages, "wide"))])
    with pytest.raises(PolicyError, match="schedule keyframe 1 has a schedule of its own"):
        Policy.scheduled([(0.0, MILD), (0.5, STEP)])
    with pytest.raises(PolicyError, match="must be its first keyframe's"):
        Policy(WILD.sub_policies, WILD.stages, schedule=STEP.schedule)
    with pytest.raises(PolicyError, match="the first interval starts at epoch 0"):
        Policy.from_intervals([(2, MILD)], epochs=10)
    with pytest.raises(PolicyError, match="epoch 3 does not come after epoch 5"):
        Policy.from_intervals([(0, MILD), (5, WILD), (3, MILD)], epochs=10)


def test_cli_train_refuses_a_bad_schedule_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(BAD[0][0])
    code = cli.main(["train", "--policy", str(bad), "--epochs", "1", "--n-train", "100", "--quiet",
                     "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"autoaug: error: {bad}: schedule keyframe 2 at 0.3 comes before")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]  # nothing written


# ---------------------------------------------------------------------------- the graph

def test_graph_numbers_at_epochs_0_mid_and_last_are_the_keyframes():
    epochs = 20
    for policy in (LINEAR, STEP):
        t = policy_tensors(policy)
        for epoch, k in ((0, 0), (8 if policy is LINEAR else 5, 1), (epochs, 2)):
            now = {name: v.numpy() for name, v in tables_at(t, epoch / epochs).items()}
            frame = policy_tensors(policy.schedule.keyframes[k][1])
            rows = frame["op_ids"].shape[1]
            for name in ("op_ids", "probs", "levels"):
                np.testing.assert_array_equal(now[name][:rows], frame[name][0])
            for name in ("stage_probs", "stage_levels", "group_count"):
                np.testing.assert_array_equal(now[name], frame[name][0])
    # between keyframes, a linear schedule's numbers are Policy.at's, to the bit
    for f in (0.1, 0.37, 0.55, 0.999):
        now, there = tables_at(policy_tensors(LINEAR), f), policy_tensors(LINEAR.at(f))
        for name in ("probs", "levels", "stage_probs", "stage_levels"):
            np.testing.assert_array_equal(now[name].numpy(), there[name][0])
    at = LINEAR.at(0.2)  # halfway from keyframe 0 to 1
    rotate = at.sub_policies[0][0]
    assert (rotate.op, rotate.p, rotate.level) == ("Rotate", pytest.approx(0.55), pytest.approx(5.0))
    assert at.stages[1].level == pytest.approx(7.0)
    assert STEP.at(0.74).sub_policies == OTHER.sub_policies and STEP.at(0.74).name == "pba"


def test_scheduled_pixels_are_policy_at_pixels(images):
    y = np.arange(len(images)) % 10
    # step keyframes of one structure with other row and class-group counts (padded in the graph)
    per_class = Policy(((Step("Rotate", 0.9, 8.0), Step("Color", 1.0, 9.0)),), MILD.stages, class_policies=(
        ClassPolicy((1, 7), ((Step("Invert", 1.0, 0.0),), (Step("Solarize", 0.8, 5.0), Step("Cutout", 1.0, 6.0)))),))
    grouped = Policy.scheduled([(0.0, MILD), (0.5, per_class)])
    assert grouped.structure() == MILD.structure() and grouped.per_class
    for policy, points in ((LINEAR, (0.0, 0.1, 0.4, 0.95, 1.5)), (STEP, (0.25, 0.74, 1.0)), (grouped, (0.3, 0.5))):
        for f in points:
            got = policy.apply(images, y, seed=3, epoch=2, index=1, progress=f)[0].numpy()
            want = policy.at(f).apply(images, y, seed=3, epoch=2, index=1)[0].numpy()
            np.testing.assert_array_equal(got, want, err_msg=f"{policy.name} at {f}")
    assert not np.array_equal(LINEAR.apply(images, progress=0.0).numpy(), LINEAR.apply(images, progress=0.4).numpy())
    # default progress: the start of training
    np.testing.assert_array_equal(STEP.apply(images, seed=1).numpy(), MILD.apply(images, seed=1).numpy())


def test_one_trace_for_schedules_of_one_structure(images):
    STEP.apply(images, progress=0.0)  # trace once for this structure
    before = augment.tracing_count()
    longer = Policy.scheduled([(0.0, OTHER), (0.1, WILD), (0.2, MILD), (0.9, OTHER)], mode="step")
    for policy in (longer, LINEAR, OTHER):
        for f in (0.3, tf.constant(0.8)):
            policy.apply(images[:8], seed=1, progress=f)
    assert augment.tracing_count() == before


def test_training_pipeline_at_epoch_e_applies_policy_at_e_over_epochs(images):
    y = np.arange(len(images)) % 10
    epochs, batch, steps = 4, 12, 2
    per_call = augment.batches_per_call(LINEAR, batch, *images.shape[1:3])
    LINEAR.apply(images[:4], batch_size=batch, batches=per_call)  # the pipeline's graph, traced once
    before = augment.tracing_count()
    scheduled = list(train_dataset(images, y, LINEAR, batch_size=batch, num_classes=10, seed=7, epochs=epochs,
                                   total_epochs=epochs))
    assert augment.tracing_count() == before  # every epoch of the schedule: one trace
    # the same batches, not augmented (the data order follows the seed), then Policy.at's pixels
    raw = list(train_dataset(images, y, builtin("none"), batch_size=batch, num_classes=10, seed=7, epochs=epochs))
    assert len(scheduled) == len(raw) == epochs * steps
    for g, ((got, _), (plain, _)) in enumerate(zip(scheduled, raw)):
        e, i = divmod(g, steps)
        want = LINEAR.at(e / epochs).apply(tf.cast(plain, tf.uint8), seed=7, epoch=e, index=i)
        np.testing.assert_array_equal(got.numpy(), want.numpy().astype(np.float32), err_msg=f"epoch {e}")
    with pytest.raises(PolicyError, match="a scheduled policy needs total_epochs"):
        train_dataset(images, y, LINEAR, batch_size=8, num_classes=10)


def test_train_model_gives_the_pipeline_its_epochs(digits, monkeypatch):
    from autoaug import train
    seen = []

    class Seen(Exception):
        pass

    real = train.train_dataset

    def spy(*args, **kwargs):  # the pipeline train_model trains on: progress = epoch / total_epochs
        if args[2] != STEP:  # the un-augmented batches its throughput probe reads
            return real(*args, **kwargs)
        seen.append((args[2], kwargs.get("total_epochs")))
        raise Seen

    monkeypatch.setattr(train, "train_dataset", spy)
    x, y = digits
    with pytest.raises(Seen):
        train.train_model(x[:64], y[:64], x[64:96], y[64:96], STEP, model="cnn-small", num_classes=10,
                          epochs=7, batch_size=32, seed=0)
    assert seen == [(STEP, 7)]


def test_policy_layer_reads_a_progress_variable(images):
    import keras
    layer = STEP.as_layer(seed=4)
    assert layer.progress is not None and builtin("standard").as_layer().progress is None
    layer.progress.assign(0.5)
    out = layer(images[:8].astype("float32"), training=True).numpy()
    want = augment.apply_policy(STEP.at(0.5), images[:8], seed=4, index=1).numpy()
    np.testing.assert_array_equal(out.astype(np.uint8), want)
    callback = ScheduleProgress(layer, epochs=8)
    callback.on_epoch_begin(6)
    assert float(layer.progress.numpy()) == 0.75
    again = keras.layers.deserialize(keras.layers.serialize(layer))
    assert again.policy == STEP and again.progress is not None
    with pytest.raises(PolicyError, match="has no schedule"):
        ScheduleProgress(builtin("standard").as_layer(), 3)


# ---------------------------------------------------------------------------- PBT history, tracking, preview

def test_from_intervals_merges_repeats_and_places_keyframes():
    p = Policy.from_intervals([(0, MILD), (3, MILD), (6, WILD), (9, MILD)], epochs=12, name="member 3")
    assert [at for at, _ in p.schedule.keyframes] == [0.0, 0.5, 0.75] and p.schedule.mode == "step"
    assert p.at(5 / 12).stages == MILD.stages and p.at(6 / 12).stages == WILD.stages
    assert p.name == "member 3" and Policy.from_json(p.to_json()) == p


def test_tracking_params_and_run_names_stay_short():
    params = tracking.policy_params(STEP)
    assert params["schedule"] == "step at 0, 0.25, 0.75" and params["sp0.step0"] == "Rotate p=0.2 L=1"
    assert all(len(str(v)) <= 500 for v in params.values())
    name = tracking.trial_run_name(4, STEP)
    assert name.startswith("t04 step schedule: Rotate/ShearX/Color") and len(name) <= 60


def test_preview_shows_a_schedule_at_chosen_epochs(tmp_path, monkeypatch, capsys):
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    STEP.save("step.json")
    assert cli.main(["preview", "--policy", "step.json", "--at-epochs", "0,10,19", "--epochs", "20",
                     "--copies", "2", "--n", "4", "--out", "grid.png"]) == 0
    assert "rows 2-3: epoch 0 of 20; rows 4-5: epoch 10 of 20; rows 6-7: epoch 19 of 20" in capsys.readouterr().out
    plain = Image.open("grid.png").size
    assert cli.main(["preview", "--policy", "step.json", "--copies", "2", "--n", "4", "--out", "keys.png"]) == 0
    assert Image.open("keys.png").size == plain  # by default its 3 keyframes: 1 + 3 x 2 rows
    assert cli.main(["preview", "--policy", "step.json", "--at-epochs", "0,30", "--epochs", "20"]) == 2
    assert "--at-epochs must list 1..8 epochs in 0..20" in capsys.readouterr().err


# ---------------------------------------------------------------------------- search spaces

class _Recorder(RandomSuggest):
    def __init__(self, seed):
        super().__init__(seed)
        self.names = []

    def float(self, name, low, high):
        self.names.append((name, low, high))
        return super().float(name, low, high)

    def categorical(self, name, choices):
        self.names.append((name, tuple(choices)))
        return super().categorical(name, choices)


def test_ramp_space_samples_valid_reproducible_schedules():
    space = load_space(RAMP_SPACE)
    assert space.digest() != load_space(str(ROOT / "search_spaces" / "autoaugment_light.yaml")).digest()
    suggest = _Recorder(3)
    policy = space.sample(suggest)
    assert ("schedule.start", 0.0, 1.0) in suggest.names and ("schedule.end", 0.5, 2.0) in suggest.names
    assert ("schedule.shape", ("linear", "cosine")) in suggest.names
    assert policy.schedule.mode == "linear" and policy.schedule.keyframes[0][0] == 0.0
    Policy.from_json(policy.to_json()).validate()
    drawn = space.sample(_Recorder(3), canonical=False)  # random_policy keeps the drawn spelling
    assert space.random_policy(3) == space.random_policy(3) and space.random_policy(3).digest() == drawn.digest()
    assert len({space.random_policy(s).digest() for s in range(6)}) == 6
    # the keyframes scale the policy at strength 1 by the ramp's strength at their fraction
    fixed = space_from_dict({"ops": ["Rotate"], "sub_policies": 1, "steps": 1, "probabilities": [0.5],
                             "levels": [8], "stages": ["policy"], "schedule": {
                                 "start": 0.25, "end": 1.0, "shape": "cosine", "keyframes": 3}})
    ramp = fixed.sample(RandomSuggest(0))
    assert [(at, str(p.sub_policies[0][0])) for at, p in ramp.schedule.keyframes] == [
        (0.0, "Rotate p=0.125 L=2"), (0.5, "Rotate p=0.3125 L=5"), (1.0, "Rotate p=0.5 L=8")]
    levels_only = space_from_dict({**fixed.to_dict(), "schedule": {"start": 0.0, "end": 2.0, "scale": "levels"}})
    end = levels_only.sample(RandomSuggest(0)).schedule.keyframes[-1][1].sub_policies[0][0]
    assert (end.p, end.level) == (0.5, 10.0)  # clipped to the level range; p untouched


@pytest.mark.parametrize("schedule,message", [
    ({"kind": "cyclic"}, "'schedule.kind' must be ramp"),
    ({"start": [1.0, 0.5]}, "'schedule.start' must be a strength multiplier or a range"),
    ({"end": 3}, "within 0..2"),
    ({"shape": ["linear", "zigzag"]}, "'schedule.shape' must be one of linear, cosine"),
    ({"ramped": ["cutout"]}, "'schedule.ramped' must list some of the space's stages"),
    ({"keyframes": 40}, "'schedule.keyframes' must be an integer in 3..11"),
    ({"speed": 1}, "unknown schedule keys: speed"),
])
def test_bad_ramp_spaces_give_one_line(schedule, message):
    with pytest.raises(ConfigError, match=message):
        space_from_dict({"kind": "autoaugment", "schedule": schedule})


@pytest.mark.slow
def test_both_drivers_search_a_ramp_space(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # KerasTuner's project folder
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")  # one store for both studies
    for driver in ("optuna", "kerastuner"):
        overrides = tiny_overrides(tmp_path, name=f"ramp-{driver}", n_trials=2, baselines="[none]",
                                   search_space=RAMP_SPACE, **{"data.n_train": 100, "data.n_val": 50,
                                                               "training.epochs": 1, "driver.name": driver,
                                                               "driver.tuner": "random"})
        ctx, frame = run_search(load_experiment(None, overrides), progress=False)
        assert sorted(frame["state"]) == ["complete", "complete"], (driver, frame.to_dict("records"))
        exp_id = client.get_experiment_by_name(f"ramp-{driver}").experiment_id
        searched = [r for r in client.search_runs([exp_id]) if r.data.tags.get("autoaug.trial") == "1"]
        assert len(searched) == 1, driver
        run = searched[0]
        with open(client.download_artifacts(run.info.run_id, "policy.json", str(tmp_path))) as f:
            policy = Policy.from_json(f.read())
        assert policy.schedule is not None and policy.schedule.mode == "linear"
        assert run.data.params["schedule"].startswith("linear at 0")
        assert any(k.endswith("schedule.start") for k in run.data.params), driver  # searched like any parameter
        assert "linear schedule" in run.data.tags["mlflow.runName"]


def test_density_matching_refuses_a_schedule_space(tmp_path):
    from autoaug.search.study import StudyContext
    exp = load_experiment(None, tiny_overrides(tmp_path, search_space=RAMP_SPACE,
                                               evaluation="density-matching"))
    with pytest.raises(ConfigError, match="asks for a schedule.*use evaluation: proxy-training"):
        StudyContext.create(exp)


def test_schedule_type_is_checked():
    with pytest.raises(PolicyError, match="schedule must be a Schedule"):
        Policy(MILD.sub_policies, MILD.stages, schedule=types.SimpleNamespace(keyframes=()))
    assert isinstance(STEP.schedule, Schedule) and STEP.per_class is False
