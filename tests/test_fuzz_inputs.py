"""Fuzzed policy, search-space and experiment files: random bytes, truncated and deeply nested
JSON/YAML, and valid files with values of the wrong type. Every loader answers with its own
error class (or a valid object), never another exception, and writes nothing; a handful go
through the command line: exit 2, one line, no traceback, no file created.

Deterministic: every case comes from a seeded generator, so a failure names a case that replays.
"""
import json
import os
import random
import subprocess
import sys

import pytest
import yaml

from autoaug import load_policy
from autoaug.config import ConfigError, load_experiment
from autoaug.policy import Policy, PolicyError, builtin
from autoaug.search.space import SearchSpace, load_space
from helpers import ROOT

POLICY_TEXT = builtin("autoaugment-cifar10+standard+cutout").to_json()
SPACE_TEXT = (ROOT / "search_spaces" / "autoaugment_small.yaml").read_text()
EXPERIMENT_TEXT = (ROOT / "experiments" / "quickstart.yaml").read_text()
TEXTS = {"policy": POLICY_TEXT, "space": SPACE_TEXT, "experiment": EXPERIMENT_TEXT}
JUNK = [None, True, -1, 0, 1e308, float("nan"), "", "x" * 300, [], {}, [[[]]], {"a": {"b": []}}, [1, "a", None],
        -(10**30), "../../etc/passwd", "Rotate"]


def _nested(rng: random.Random, kind: str) -> str:
    depth = rng.choice([50, 500, 2000, 20000, 200000])
    if kind == "policy":
        return rng.choice(["[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth,
                           '{"schema_version": 1, "sub_policies": ' + "[" * depth + "]" * depth + "}"])
    return rng.choice(["[" * depth + "]" * depth, "{a: " * depth + "1" + "}" * depth,
                       "".join("  " * i + "- \n" for i in range(min(depth, 3000))),
                       "".join("  " * i + f"k{i}:\n" for i in range(min(depth, 3000)))])


def _mutated(rng: random.Random, kind: str) -> str:
    """A valid file with one value, anywhere in its tree, replaced by junk of another type."""
    data = json.loads(POLICY_TEXT) if kind == "policy" else yaml.safe_load(TEXTS[kind])
    node, path = data, []
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        if not isinstance(node[key], (dict, list)):
            break
        node = node[key]
    target = data
    for key in path[:-1]:
        target = target[key]
    junk = rng.choice(JUNK)
    if path:
        target[path[-1]] = junk
    else:
        data = junk
    return json.dumps(data) if kind == "policy" else yaml.safe_dump(data)


def _case(kind: str, n: int) -> tuple[str, bytes]:
    rng = random.Random(f"{kind}-{n}")
    style = ["bytes", "truncated", "nested", "mutated"][n % 4]
    if style == "bytes":
        return style, bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 100, 3000])))
    if style == "truncated":
        text = TEXTS[kind].encode()
        return style, text[:rng.randrange(len(text))]
    if style == "nested":
        return style, _nested(rng, kind).encode()
    return style, _mutated(rng, kind).encode()


N_PER_KIND = 72  # 3 kinds x 72 = 216 cases
LOADERS = {
    "policy": (load_policy, PolicyError, Policy, "p.json"),
    "space": (load_space, ConfigError, SearchSpace, "s.yaml"),
    "experiment": (load_experiment, ConfigError, object, "e.yaml"),
}


def _listing(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("kind,n", [(k, n) for k in LOADERS for n in range(N_PER_KIND)],
                         ids=[f"{k}-{n}" for k in LOADERS for n in range(N_PER_KIND)])
def test_loaders_raise_their_own_error_and_write_nothing(tmp_path, monkeypatch, kind, n):
    load, error, kind_type, name = LOADERS[kind]
    style, content = _case(kind, n)
    path = tmp_path / name
    path.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    try:
        result = load(str(path))
    except error as e:
        message = str(e)
        assert message and "\n" not in message and len(message) < 2000, (style, message[:300])
        assert "Traceback" not in message
    else:  # a truncation or mutation that is still a valid file: a valid object
        assert isinstance(result, kind_type), (style, result)
    assert _listing(tmp_path) == before


def _cli(tmp_path, *argv):
    return subprocess.run([sys.executable, "-m", "autoaug.cli", *argv], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "AUTOAUG_CACHE": str(tmp_path / "cache")})


# (file name, case, argv given the file's path): the CLI's one line for fuzzed files
CLI_CASES = [
    ("e.yaml", ("experiment", 0), lambda p: ["search", p, "--quiet"]),
    ("e.yaml", ("experiment", 2), lambda p: ["search", p, "--quiet"]),
    ("e.yaml", ("experiment", 1), lambda p: ["compare", "--experiment", p]),
    ("s.yaml", ("space", 2), lambda p: ["search", str(ROOT / "experiments" / "quickstart.yaml"), "--quiet",
                                        "--set", f"search_space={p}"]),
    ("s.yaml", ("space", 4), lambda p: ["search", str(ROOT / "experiments" / "quickstart.yaml"), "--quiet",
                                        "--set", f"search_space={p}"]),
    ("p.json", ("policy", 2), lambda p: ["preview", "--policy", p, "--out", "out.png"]),
    ("p.json", ("policy", 4), lambda p: ["train", "--policy", p]),
]


@pytest.mark.parametrize("name,case,argv", CLI_CASES, ids=[f"{c[1][0]}-{c[1][1]}" for c in CLI_CASES])
def test_cli_answers_fuzzed_files_with_one_line(tmp_path, name, case, argv):
    style, content = _case(*case)
    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_bytes(content)
    before = _listing(tmp_path)
    done = _cli(tmp_path, *argv(str(path)))
    assert done.returncode == 2, (style, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("autoaug: error:") and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert _listing(tmp_path) == before
