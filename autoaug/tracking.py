"""The only module that talks to MLflow.

One parent run per study (tags ``autoaug.study``, ``autoaug.role=parent``), one nested
child run per trial (``mlflow.parentRunId``). Everything goes through ``MlflowClient``
with explicit run ids, so parallel trials and workers never share an "active run".
Credentials in URLs are redacted before anything is logged or printed.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from dataclasses import dataclass

from .files import code_version

PARENT, TRIAL, TRAIN, EVALUATION, SELECTION = "parent", "trial", "train", "evaluation", "selection"
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# The MLflow 3 UI opens in its GenAI view unless the URL asks for the model-training one (the
# experiment tag above is not consulted by the 3.x UI; the browser remembers a click on the toggle).
UI_VIEW = "?workflowType=machine_learning"
UI_MODEL_TRAINING_VIEW = "#/experiments" + UI_VIEW
_MAX_READABLE_SUBPOLICIES = 25
_STEP_PARAM = re.compile(r"(c[\d-]+\.)?sp\d+\.step\d+")


class TrackingError(RuntimeError):
    """The tracking store cannot be used; one line naming it."""


from .stores import redact  # noqa: E402  (one redaction for every store URL)


def check_uri(tracking_uri: str, *, must_exist: bool = False) -> None:
    """Fail early, before any store is created or written: a SQLite store whose folder does not
    exist, a database of another program (an Optuna storage), a server that does not answer
    (within `PROBE_TIMEOUT_S`), or with `must_exist` a store that is not there."""
    from .stores import StoreError, check_kind, sqlite_path
    path = sqlite_path(tracking_uri)
    if path is not None and not must_exist:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise TrackingError(f"cannot use MLflow tracking store {redact(tracking_uri)}: "
                                f"folder {folder} does not exist; create it or fix --tracking-uri")
    try:
        kind = check_kind(tracking_uri, "mlflow", "--tracking-uri", must_exist=must_exist)
    except StoreError as e:
        raise TrackingError(str(e)) from None
    if kind == "server" and tracking_uri.startswith(("http://", "https://")):
        probe_server(tracking_uri)


PROBE_TIMEOUT_S = 5


def probe_server(url: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One request to an MLflow server's REST API; TrackingError at once when it does not answer.

    Any HTTP answer (even 401/403: the server is there, credentials are MLflow's business) passes.
    """
    import urllib.error
    import urllib.request
    endpoint = url.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return
    except Exception as e:
        why = getattr(e, "reason", None) or e
        raise TrackingError(f"cannot reach MLflow server {redact(url)} (tried GET "
                            f"/api/2.0/mlflow/experiments/search, {timeout:g} s timeout: {redact(str(why))}); "
                            f"start the server or fix --tracking-uri") from None


os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A server that went away mid-run: a few retries with backoff (seconds, not MLflow's minutes).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def _mlflow():
    import mlflow
    return mlflow


def client(tracking_uri: str):
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=tracking_uri)


def policy_params(policy) -> dict:
    """Short readable params: one per step (`sp0.step1 = Rotate p=0.7 L=2`), stages, hash."""
    params = {"policy_hash": policy.digest(), "policy_name": policy.name or "searched",
              "stages": ">".join(s if isinstance(s, str) else s.op for s in policy.stages) or "(none)",
              "ranges": policy.ranges, "num_sub_policies": len(policy.sub_policies)}
    groups = [("", policy.sub_policies)] + [("c" + "-".join(map(str, g.classes)) + ".", g.sub_policies)
                                            for g in policy.class_policies]
    if policy.class_policies:
        params["class_groups"] = len(policy.class_policies)
    if policy.schedule is not None:  # `linear at 0, 0.25, 1`; the steps below are the first keyframe's
        at = ", ".join(f"{f:g}" for f, _ in policy.schedule.keyframes)
        params["schedule"] = f"{policy.schedule.mode} at {at}"[:500]
    if sum(len(subs) for _, subs in groups) <= _MAX_READABLE_SUBPOLICIES:
        for prefix, subs in groups:  # per-class steps read `c6-9.sp0.step1 = Rotate p=0.5 L=2`
            for k, sub in enumerate(subs):
                for i, step in enumerate(sub):
                    params[f"{prefix}sp{k}.step{i}"] = str(step)
    return params


_STAGE_NAMES = {"FlipLR": "flip", "PadCrop": "crop", "Cutout": "cutout"}


def policy_label(policy, max_ops: int = 4) -> str:
    """What a policy does, short: `ShearY/Color, crop 2` (ops used with p > 0, then each stage
    in order, with its level when it is not the reference one); `no augmentation` if nothing.
    A schedule: `step schedule: ...` (its ops over every keyframe, its first keyframe's stages)."""
    from .policy import POLICY_STAGE, STAGES
    frames = [p for _, p in policy.schedule.keyframes] if policy.schedule is not None else [policy]
    subs = [sp for p in frames for sp in list(p.sub_policies) + [sp for g in p.class_policies for sp in g.sub_policies]]
    ops = list(dict.fromkeys(s.op for sp in subs for s in sp if s.p > 0 and s.op != "Identity"))
    parts = []
    for stage in policy.stages:
        if stage == POLICY_STAGE:
            if ops:
                text = "/".join(ops[:max_ops]) + (f"/+{len(ops) - max_ops}" if len(ops) > max_ops else "")
                parts.append(("per-class " if policy.class_policies else "") + text)
            continue
        name = _STAGE_NAMES.get(stage.op)
        if name is None:
            parts.append(f"{stage.op} {stage.level:g}" if stage.level else stage.op)
        elif stage == STAGES[name]:
            parts.append(name)
        else:
            parts.append(f"{name} {stage.level:g}" + (f" p={stage.p:g}" if stage.p < 1 else ""))
    text = ", ".join(parts) or "no augmentation"
    return text if policy.schedule is None else f"{policy.schedule.mode} schedule: {text}"


def trial_run_name(number: int, policy, baseline: str | None = None, seed: int | None = None,
                   max_len: int = 60) -> str:
    """A trial run's name: `t03 randaugment+standard` (a baseline: its name, plus the ops it
    left out on this dataset) or `t07 ShearY/Color, crop 2` (a searched policy: what it does);
    a re-training with another seed ends in ` seed 1`.

    >>> from autoaug.policy import builtin
    >>> trial_run_name(0, builtin("none"), "none"), trial_run_name(12, builtin("standard"))
    ('t00 none', 't12 flip, crop')
    """
    what = baseline or policy_label(policy)
    left_out = (policy.meta or {}).get("left_out") if baseline else None
    if left_out:
        what += f" without {'/'.join(left_out)}"
    tail = f" seed {seed}" if seed is not None else ""
    head = f"t{number:02d} {what}"
    if len(head) + len(tail) > max_len:
        head = head[:max_len - len(tail) - 1] + "…"
    return head + tail


def dataset_input(source: str, arrays, num_classes: int, context: str = "train"):
    """The study's data as an MLflow dataset input (the runs table's Dataset column and filter).

    Name: the source's name; digest: a hash of the train and validation images and labels;
    profile: the split sizes, the image shape and the number of classes.
    """
    import hashlib
    from mlflow.entities import Dataset, DatasetInput, InputTag
    x_tr, y_tr, x_val, y_val = arrays
    h = hashlib.sha256()
    for a in arrays:
        if hasattr(a, "fingerprint"):  # streamed image files: their paths and decoding
            h.update(a.fingerprint())
        else:
            h.update(memoryview(a).cast("B") if a.flags.c_contiguous else bytes(a))
    is_path = os.sep in source or os.path.exists(source)
    name = os.path.basename(source.rstrip("/\\")) if is_path else source
    for suffix in (".tar.gz", ".tgz", ".tar", ".npz"):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
    profile = {"n_train": len(x_tr), "n_val": len(x_val), "num_classes": num_classes,
               "image_shape": list(x_tr.shape[1:])}
    ds = Dataset(name=name, digest=h.hexdigest()[:10], source_type="local" if is_path else "autoaug",
                 source=json.dumps({"uri": os.path.abspath(source) if is_path else source}),
                 profile=json.dumps(profile))
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", context)])


def ui_links(tracking_uri: str, base_url: str) -> list[tuple[str, str]]:
    """(experiment, URL of its runs in the model-training view) for each experiment of a store
    that has runs; none when the store does not exist yet or cannot be read."""
    if tracking_uri.startswith("sqlite:///") and not os.path.exists(tracking_uri[len("sqlite:///"):]):
        return []
    try:
        c = client(tracking_uri)
        found = [e for e in c.search_experiments(max_results=50, order_by=["last_update_time DESC"])
                 if c.search_runs([e.experiment_id], max_results=1)]
    except Exception:
        return []
    return [(e.name, f"{base_url}/#/experiments/{e.experiment_id}/runs{UI_VIEW}") for e in found]


class Tracker:
    """Logs a study to MLflow: `start_study`, then per trial `start_trial` ... `end_trial`."""

    def __init__(self, tracking_uri: str, experiment: str):
        self.uri = tracking_uri
        self.experiment_name = experiment
        self.client = client(tracking_uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            self.experiment_id = exp.experiment_id if exp else self._create_experiment(experiment)
        except Exception as e:  # the store is unreachable or not an MLflow store
            raise TrackingError(f"cannot use MLflow tracking store {redact(tracking_uri)}: "
                                f"{redact(str(e).splitlines()[0][:200])}") from None
        self.parent_id: str | None = None
        self.dataset = None  # an MLflow DatasetInput (`dataset_input`) logged on every trial run

    def _create_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException
        try:  # MLflow's own tag for a model-training (not GenAI) experiment
            return self.client.create_experiment(name, tags={EXPERIMENT_KIND: MODEL_TRAINING})
        except MlflowException:  # another worker created it first
            return self.client.get_experiment_by_name(name).experiment_id

    # ------------------------------------------------------------------ study
    def find_parent(self, study: str):
        """The latest parent run of a study of this name."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`autoaug.study` = '{study}' and tags.`autoaug.role` = '{PARENT}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None

    def start_study(self, study: str, config: dict, space_dict: dict, space_hash: str, storage: str | None,
                    parent_id: str | None = None, new: bool = False, screen: dict | None = None) -> str:
        """Adopt the parent run `parent_id`; else create one (`new`), or find or create one.
        A new parent also gets the screen that narrowed the space (`log_screen`), if any.

        The Optuna driver creates a parent for each new study and records its id in the
        study, so parallel workers all adopt the same one; a resumed study keeps its parent.
        """
        if parent_id:
            try:
                existing = self.client.get_run(parent_id)
            except Exception:
                raise TrackingError(f"study {study!r} logs to MLflow run {parent_id}, which is not in "
                                    f"{redact(self.uri)}; use the study's --tracking-uri") from None
        else:
            existing = None if new else self.find_parent(study)
        if existing is not None:
            self.parent_id = existing.info.run_id
            if existing.info.status != "RUNNING":
                self.client.update_run(self.parent_id, status="RUNNING")
            return self.parent_id
        tags = {"autoaug.study": study, "autoaug.role": PARENT, "mlflow.runName": study,
                "autoaug.code_version": code_version(), "autoaug.storage": redact(storage) or "memory"}
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=study)
        self.parent_id = run.info.run_id
        clean = dict(config)
        clean["storage"] = redact(clean.get("storage"))
        clean["tracking_uri"] = redact(clean.get("tracking_uri"))
        self.client.log_text(self.parent_id, json.dumps(clean, indent=1, default=str), "experiment.json")
        self.client.log_text(self.parent_id, json.dumps(space_dict, indent=1), "search_space.json")
        flat = {"model": config["model"]["name"], "dataset": config["data"]["source"],
                "epochs": config["training"]["epochs"], "n_trials": config["n_trials"],
                "driver": config["driver"]["name"], "sampler": config["driver"]["sampler"],
                "pruner": config["driver"]["pruner"], "seed": config["seed"],
                "search_space_hash": space_hash}
        self._log_params(self.parent_id, flat)
        if screen is not None:
            self.log_screen(screen)
        return self.parent_id

    def finish_study(self, best: dict | None, figures: dict | None = None, done: bool = True) -> None:
        """Best policy as artifact + tags on the parent; plots; parent marked finished when `done`
        (the last of parallel workers to stop marks it)."""
        if best:
            self.client.log_text(self.parent_id, best["policy"].to_json(), "best_policy.json")
            for key in ("trial", "run_id", "val_accuracy", "policy_hash"):
                self.client.set_tag(self.parent_id, f"autoaug.best_{key}", str(best[key]))
            self.client.log_metric(self.parent_id, "best_val_accuracy", float(best["val_accuracy"]))
        for name, fig in (figures or {}).items():
            self.client.log_figure(self.parent_id, fig, f"plots/{name}.png")
            import matplotlib.pyplot as plt
            plt.close(fig)  # pyplot keeps every figure until closed: a long process would pile them up
        self.client.set_tag(self.parent_id, "mlflow.note.content", self.summary_markdown())
        if done:
            self.client.set_terminated(self.parent_id, "FINISHED")

    def summary_markdown(self, top: int = 5) -> str:
        """The parent run's description: the baselines and the best searched trials, then the
        selection's verdict (MLflow shows it above the run's details)."""
        done = sorted((r for r in self.trial_records() if r.complete), key=lambda r: -r.value)
        rows = [r for r in done if r.baseline] + [r for r in done if not r.baseline][:top]
        lines = ["| trial | policy | val accuracy |", "|---|---|---|"]
        lines += [f"| {r.number} | {r.baseline or (r.stages + ': ' + r.summary)} | {r.value:.4f} |" for r in rows]
        selection = self.read_selection()
        if selection is not None:
            lines += ["", f"Selection: {selection['sentence']}"]
        return "\n".join(lines)

    def stop_study(self) -> None:
        """The study was interrupted: its parent run ends KILLED (a resume sets it RUNNING)."""
        if self.client.get_run(self.parent_id).info.status == "RUNNING":
            self.client.set_terminated(self.parent_id, "KILLED")

    # ------------------------------------------------------------------ trials
    def start_trial(self, number: int, policy, driver_params: dict, tags: dict | None = None) -> str:
        """A child run named for what the trial is (`trial_run_name`), with the dataset as input."""
        tags = {k: str(v) for k, v in (tags or {}).items()}
        seed = tags.get("autoaug.seed")
        name = trial_run_name(number, policy, tags.get("autoaug.baseline"), int(seed) if seed else None)
        all_tags = {"mlflow.parentRunId": self.parent_id, "mlflow.runName": name,
                    "autoaug.role": TRIAL, "autoaug.trial": str(number), "autoaug.state": "running"}
        all_tags.update(tags)
        run = self.client.create_run(self.experiment_id, tags=all_tags, run_name=name)
        run_id = run.info.run_id
        if getattr(self, "dataset", None) is not None:
            self.client.log_inputs(run_id, datasets=[self.dataset])
        params = policy_params(policy)
        params.update({f"raw.{k}": v for k, v in driver_params.items() if len(str(v)) < 250})
        self._log_params(run_id, params)
        self.client.log_text(run_id, policy.to_json(), "policy.json")
        return run_id

    def log_metrics(self, run_id: str, metrics: dict, step: int = 0) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if k != "epoch"]
        self.client.log_batch(run_id, metrics=batch)

    def log_image(self, run_id: str, image, path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            file = os.path.join(tmp, os.path.basename(path))
            image.save(file)
            self.client.log_artifact(run_id, file, os.path.dirname(path) or None)

    def end_trial(self, run_id: str, state: str, metrics: dict | None = None,
                  reason: str | None = None) -> None:
        """state: complete | pruned | failed. Pruned runs finish; failed ones are FAILED."""
        if metrics:
            self.log_metrics(run_id, metrics)
        self.client.set_tag(run_id, "autoaug.state", state)
        if reason:
            self.client.set_tag(run_id, "autoaug.fail_reason", reason[:4000])
        self.client.set_terminated(run_id, "FAILED" if state == "failed" else "FINISHED")

    def running_trial_runs(self) -> dict:
        """{trial number: run id} of this study's trial runs that are still RUNNING in MLflow."""
        runs = self.client.search_runs(
            [self.experiment_id], max_results=10000,
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}' and attributes.status = 'RUNNING'")
        return {int(r.data.tags.get("autoaug.trial", -1)): r.info.run_id for r in runs}

    def close_orphan(self, run_id: str, reason: str) -> bool:
        """Close a trial run whose worker is gone (if it is still RUNNING) as failed."""
        if self.client.get_run(run_id).info.status != "RUNNING":
            return False
        self.end_trial(run_id, "failed", reason=reason)
        return True

    # ------------------------------------------------------------------ population members (pbt)
    def start_member(self, number: int, member: int) -> str:
        """A population member's child run (a trial run: `compare`, `best` and selection read it);
        its policy is logged when it finishes (`finish_member`): it changes as the member trains."""
        name = f"t{number:02d} pbt member {member}"
        tags = {"mlflow.parentRunId": self.parent_id, "mlflow.runName": name, "autoaug.role": TRIAL,
                "autoaug.trial": str(number), "autoaug.state": "running", "autoaug.pbt_member": str(member)}
        run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        if getattr(self, "dataset", None) is not None:
            self.client.log_inputs(run_id, datasets=[self.dataset])
        return run_id

    def log_member_history(self, run_id: str, history: dict) -> None:
        """The member's policy per interval and per epoch so far, through the members it copied."""
        self.client.log_text(run_id, json.dumps(history, indent=1), "policy_history.json")

    def finish_member(self, run_id: str, schedule, metrics: dict) -> None:
        """The member's schedule as its policy (policy.json and short params), then complete."""
        self._log_params(run_id, policy_params(schedule))
        self.client.log_text(run_id, schedule.to_json(), "policy.json")
        self.end_trial(run_id, "complete", metrics)

    def log_checkpoint(self, run_id: str, local_path: str, artifact_path: str) -> None:
        """A file as the artifact `artifact_path` (its folder and name) of a run."""
        import shutil
        with tempfile.TemporaryDirectory() as tmp:
            file = os.path.join(tmp, os.path.basename(artifact_path))
            shutil.copyfile(local_path, file)
            self.client.log_artifact(run_id, file, os.path.dirname(artifact_path) or None)

    def fetch_artifact(self, run_id: str, artifact_path: str, dst: str) -> str:
        """Download one artifact of a run into the folder `dst`; its local path."""
        try:
            return _mlflow().artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                          dst_path=dst, tracking_uri=self.uri)
        except Exception as e:
            text = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise TrackingError(f"cannot read runs:/{run_id}/{artifact_path} from MLflow "
                                f"({redact(self.uri)}): {redact(text)}") from None

    def stop_runs(self, run_ids) -> None:
        """Runs still RUNNING end KILLED (the study stopped; `reopen_runs` resumes them)."""
        for run_id in run_ids:
            if self.client.get_run(run_id).info.status == "RUNNING":
                self.client.set_terminated(run_id, "KILLED")

    def reopen_runs(self, run_ids) -> None:
        """Runs that `stop_runs` ended are RUNNING again."""
        for run_id in run_ids:
            if self.client.get_run(run_id).info.status == "KILLED":
                self.client.update_run(run_id, status="RUNNING")

    # ------------------------------------------------------------------ density-matching models
    def log_dir(self, local_dir: str, artifact_path: str) -> None:
        """A folder (the density models) as artifacts of the parent run, for other hosts."""
        self.client.log_artifacts(self.parent_id, local_dir, artifact_path)

    def download_dir(self, artifact_path: str, dst: str) -> bool:
        """Fetch a parent-run artifact folder into `dst` (replaced whole); False if absent."""
        import shutil
        try:
            if not self.client.list_artifacts(self.parent_id, artifact_path):
                return False
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with tempfile.TemporaryDirectory(dir=os.path.dirname(dst)) as tmp:
                local = _mlflow().artifacts.download_artifacts(
                    run_id=self.parent_id, artifact_path=artifact_path, dst_path=tmp, tracking_uri=self.uri)
                shutil.rmtree(dst, ignore_errors=True)
                os.replace(local, dst)
            return True
        except Exception:  # an unreadable artifact store: the caller trains the models instead
            return False

    def log_density_models(self, key: str, info: dict, trained: bool) -> None:
        """The K models' key and clean held-out accuracy on the parent run."""
        self.client.set_tag(self.parent_id, "autoaug.density_models", key)
        if trained:
            self.client.set_tag(self.parent_id, "autoaug.density_models_trained_by", info.get("trained_by", ""))
            self.log_metrics(self.parent_id, {f"density_clean_accuracy_fold{f['fold']}": f["clean_accuracy"]
                                              for f in info.get("folds", [])})

    def log_screen(self, table: dict) -> None:
        """The screen that narrowed the space (`autoaug.search.screen`): screen.json, its accuracies."""
        self.client.log_text(self.parent_id, json.dumps(table, indent=1), "screen.json")
        self.log_metrics(self.parent_id, {"screen_clean_accuracy": table["clean"],
                                          "screen_reference_accuracy": table["reference"],
                                          "screen_cpu_s": table["cpu_s"]})

    def trial_records(self, role: str = TRIAL) -> list[TrialRecord]:
        """Every trial run (or with `role` SELECTION, selection run) of this study's parent,
        from all workers, as typed records."""
        return [trial_record(r) for r in self.client.search_runs(
            [self.experiment_id], max_results=10000,
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}' and tags.`autoaug.role` = '{role}'")]

    def log_selection(self, selection: dict, text: str) -> None:
        """The selection's result on the parent run: selection.json, a readable table, the gap."""
        self.client.log_text(self.parent_id, json.dumps(selection, indent=1), "selection.json")
        self.client.log_text(self.parent_id, text, "selection.txt")
        gap = selection["gap"]
        self.client.set_tag(self.parent_id, "autoaug.selection", selection["sentence"][:5000])
        self.log_metrics(self.parent_id, {k: v for k, v in {
            "selection_mean": selection["winner"]["mean"], "selection_gap": gap["mean"],
            "selection_gap_low": gap["low"], "selection_gap_high": gap["high"]}.items() if not math.isnan(v)})

    def read_selection(self) -> dict | None:
        """The parent run's selection.json, or None when the study made no selection."""
        if not any(a.path == "selection.json" for a in self.client.list_artifacts(self.parent_id)):
            return None
        return json.loads(self.read_text(self.parent_id, "selection.json"))

    def log_fidelity(self, spearman: float, n: int) -> None:
        """How well the search's score ranked the policies that full training then measured."""
        self.log_metrics(self.parent_id, {"proxy_fidelity_spearman": spearman, "proxy_fidelity_policies": n})

    def read_text(self, run_id: str, path: str) -> str:
        return read_artifact_text(f"runs:/{run_id}/{path}", self.uri, checked=True)

    def trials_frame(self):
        """One row per trial run of this study (all workers), as a pandas DataFrame."""
        return records_frame(self.trial_records())

    def _log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[i:i + 100])


def open_study(tracking_uri: str, study: str) -> Tracker:
    """A Tracker attached to an existing study's parent run; error if there is none.
    Reads only: a missing store is an error, never created."""
    from .stores import sqlite_path
    path = sqlite_path(tracking_uri)
    if path is not None and not os.path.exists(path):
        raise TrackingError(f"MLflow store {redact(tracking_uri)} does not exist; check --tracking-uri")
    check_uri(tracking_uri, must_exist=True)
    tracker = Tracker.__new__(Tracker)
    tracker.uri, tracker.experiment_name = tracking_uri, study
    try:
        tracker.client = client(tracking_uri)
        exp = tracker.client.get_experiment_by_name(study)
    except Exception as e:
        raise TrackingError(f"cannot use MLflow tracking store {redact(tracking_uri)}: "
                            f"{redact(str(e).splitlines()[0][:200])}") from None
    if exp is not None:
        tracker.experiment_id = exp.experiment_id
        parent = tracker.find_parent(study)
    if exp is None or parent is None:
        raise TrackingError(f"no study {study!r} in MLflow store {redact(tracking_uri)}; "
                            f"check --tracking-uri and the study name")
    tracker.parent_id = parent.info.run_id
    tracker.parent = parent
    return tracker


def log_training(tracking_uri: str, experiment: str, params: dict, metrics_by_epoch: list,
                 final: dict, policy, source_run: str | None) -> str:
    """One run for a full training, linked to the search run its policy came from."""
    tracker = Tracker(tracking_uri, experiment)
    tags = {"autoaug.role": TRAIN, "autoaug.code_version": code_version()}
    if source_run:
        tags["autoaug.source_run"] = source_run
        tags["mlflow.note.content"] = f"Policy from search run [{source_run}](#/runs/{source_run})"
    run = tracker.client.create_run(tracker.experiment_id, tags=tags)
    run_id = run.info.run_id
    tracker._log_params(run_id, {**params, **policy_params(policy)})
    for metrics in metrics_by_epoch:
        tracker.log_metrics(run_id, metrics, step=int(metrics.get("epoch", 0)))
    tracker.log_metrics(run_id, final)
    tracker.client.log_text(run_id, policy.to_json(), "policy.json")
    tracker.client.set_terminated(run_id, "FINISHED")
    return run_id


class EvaluationLog:
    """An evaluation's MLflow parent run (``<experiment>-evaluate``, adopted again when the same
    setting is evaluated later) with one child run per (policy, seed)."""

    def __init__(self, tracking_uri: str, experiment: str, setting: str, config: dict):
        self.tracker = Tracker(tracking_uri, experiment)
        client = self.tracker.client
        found = client.search_runs(
            [self.tracker.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`autoaug.role` = '{EVALUATION}' and tags.`autoaug.setting` = '{setting}'")
        if found:
            self.parent_id = found[0].info.run_id
            client.update_run(self.parent_id, status="RUNNING")
        else:
            name = f"{experiment}-evaluate"
            tags = {"autoaug.role": EVALUATION, "autoaug.setting": setting, "mlflow.runName": name,
                    "autoaug.code_version": code_version()}
            self.parent_id = client.create_run(self.tracker.experiment_id, tags=tags, run_name=name).info.run_id
            clean = dict(config, storage=redact(config.get("storage")), tracking_uri=redact(config.get("tracking_uri")))
            client.log_text(self.parent_id, json.dumps(clean, indent=1, default=str), "experiment.json")

    def run(self, label: str, seed: int, policy, history: list, final: dict) -> str:
        """One finished (policy, seed) training as a child run; its id."""
        client = self.tracker.client
        name = f"{label}/seed{seed}"
        tags = {"mlflow.parentRunId": self.parent_id, "autoaug.role": TRAIN, "autoaug.policy": label,
                "autoaug.seed": str(seed), "mlflow.runName": name}
        source = (policy.meta or {}).get("run_id")
        if source:
            tags["autoaug.source_run"] = source
        run_id = client.create_run(self.tracker.experiment_id, tags=tags, run_name=name).info.run_id
        self.tracker._log_params(run_id, {"seed": seed, **policy_params(policy)})
        for metrics in history:
            self.tracker.log_metrics(run_id, metrics, step=int(metrics.get("epoch", 0)))
        self.tracker.log_metrics(run_id, final)
        client.log_text(run_id, policy.to_json(), "policy.json")
        client.set_terminated(run_id, "FINISHED")
        return run_id

    def finish(self, table: str, figure, metrics: dict) -> None:
        """The summary table, the per-seed plot and the per-policy means on the parent run."""
        client = self.tracker.client
        client.log_text(self.parent_id, table, "evaluation.txt")
        client.log_figure(self.parent_id, figure, "plots/per_seed_accuracy.png")
        self.tracker.log_metrics(self.parent_id, {re.sub(r"[^\w./ -]", "_", k): v for k, v in metrics.items()})
        client.set_terminated(self.parent_id, "FINISHED")


def read_artifact_text(uri: str, tracking_uri: str | None = None, checked: bool = False) -> str:
    """The text of an artifact addressed as runs:/<run_id>/path (or any MLflow artifact URI),
    from `tracking_uri` (default: MLflow's, ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``).
    Reads only: a missing store is an error, never created."""
    mlflow = _mlflow()
    store = tracking_uri or mlflow.get_tracking_uri()
    if uri.startswith("runs:/") and not checked:  # a Tracker's store is checked already
        check_uri(store, must_exist=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp, tracking_uri=store)
            with open(local) as f:
                return f.read()
    except Exception as e:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise TrackingError(f"cannot read {uri} from MLflow ({redact(store)}): {redact(text)}") from None


@dataclass(frozen=True)
class TrialRecord:
    """One trial run of a study as read back from MLflow (all its MLflow names stay here)."""
    number: int
    state: str  # complete | pruned | failed | running
    value: float  # val_accuracy_final; NaN when the trial has none
    run_id: str
    policy_hash: str = ""
    baseline: str = ""  # the baseline's name, "" for a searched trial
    duration_s: float = float("nan")
    stages: str = ""
    summary: str = ""
    status: str = ""  # the MLflow run status
    folds: tuple = ()  # density matching: accuracy per fold (None for a gap)
    classes: tuple = ()  # and per class
    seed: int | None = None  # the training seed of a selection run
    reason: str = ""  # why a failed trial failed (``interrupted`` for SIGINT/SIGTERM)
    same_as: int | None = None  # a repeated proposal scored by this earlier trial, not trained

    @property
    def complete(self) -> bool:
        return self.state == "complete" and not math.isnan(self.value)


def trial_record(run) -> TrialRecord:
    """The one reader of a trial run's tags, params and metrics."""
    tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
    return TrialRecord(
        number=int(tags.get("autoaug.trial", -1)), state=tags.get("autoaug.state", ""),
        value=float(metrics.get("val_accuracy_final", float("nan"))), run_id=run.info.run_id,
        policy_hash=params.get("policy_hash", ""), baseline=tags.get("autoaug.baseline", ""),
        duration_s=metrics.get("duration_s", float("nan")), stages=params.get("stages", ""),
        summary="; ".join(params[k] for k in sorted(params) if _STEP_PARAM.fullmatch(k))[:120],
        status=run.info.status, folds=_indexed(metrics, "fold"), classes=_indexed(metrics, "class"),
        seed=int(tags["autoaug.seed"]) if "autoaug.seed" in tags else None,
        reason=tags.get("autoaug.fail_reason", ""),
        same_as=int(tags["autoaug.same_as"]) if "autoaug.same_as" in tags else None)


def _indexed(metrics: dict, prefix: str) -> tuple:
    """(metrics['<prefix>0_accuracy'], ...) up to the highest index logged (None for gaps)."""
    found = {}
    for key, value in metrics.items():
        m = re.fullmatch(rf"{prefix}(\d+)_accuracy", key)
        if m:
            found[int(m.group(1))] = value
    return tuple(found.get(i) for i in range(max(found, default=-1) + 1))


TRIAL_COLUMNS = ["trial", "baseline", "state", "val_accuracy", "duration_s", "policy_hash",
                 "stages", "summary", "run_id", "status", "reason"]


def records_frame(records: list[TrialRecord]):
    """Trial records as a pandas DataFrame (TRIAL_COLUMNS), sorted by trial number."""
    import pandas as pd
    rows = [{"trial": r.number, "baseline": r.baseline, "state": r.state, "val_accuracy": r.value,
             "duration_s": r.duration_s, "policy_hash": r.policy_hash, "stages": r.stages,
             "summary": r.summary, "run_id": r.run_id, "status": r.status, "reason": r.reason}
            for r in records]
    frame = pd.DataFrame(rows, columns=TRIAL_COLUMNS)
    return frame.sort_values("trial").reset_index(drop=True)
