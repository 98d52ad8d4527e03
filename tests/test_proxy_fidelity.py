"""scripts/proxy_fidelity.py: Spearman of a proxy's scores against test accuracy, from the CSVs of
finished runs (checked against scipy), density matching as a third proxy on real fold models, and
its one-line errors."""
import csv
import importlib.util
import re

import pytest
import yaml
from helpers import ROOT, tiny_overrides
from scipy import stats

from autoaug import builtin
from autoaug.config import apply_overrides
from autoaug.search import load_space

spec = importlib.util.spec_from_file_location("proxy_fidelity", ROOT / "scripts" / "proxy_fidelity.py")
proxy_fidelity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(proxy_fidelity)

COLUMNS = ["policy", "seed", "test_accuracy", "val_accuracy", "policy_hash", "epochs"]


def _write(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(dict(zip(COLUMNS, r)) for r in rows)
    return str(path)


def _spearman(out: str, what: str) -> float:
    return float(re.search(rf"^{re.escape(what)}: Spearman ([+-][0-9.]+) ", out, re.M).group(1))


def test_fidelity_matches_scipy_and_keeps_two_policies_of_one_name_apart(tmp_path, capsys):
    # a: 5 seeds; b, c: 3; d, e: seed 0 only; the second file has another "a" (another hash) and a
    # 40-epoch row that --where leaves out
    val0 = {"a": 0.70, "b": 0.66, "c": 0.68, "d": 0.60, "e": 0.64}
    test = {"a": [0.69, 0.70, 0.68, 0.71, 0.70], "b": [0.66, 0.65, 0.67], "c": [0.64, 0.66, 0.65],
            "d": [0.58], "e": [0.62]}
    rows = [(p, s, t, val0[p] if s == 0 else 0.5, f"h{p}", 20) for p, ts in test.items() for s, t in enumerate(ts)]
    first = _write(tmp_path / "a.csv", rows)
    second = _write(tmp_path / "b.csv", [("a", 0, 0.55, 0.57, "hz", 20), ("a", 0, 0.99, 0.99, "hy", 40)])
    assert proxy_fidelity.main([first, f"{second}:other-", "--where", "epochs=20", "--top", "4"]) == 0
    out = capsys.readouterr().out
    assert "other-a" in out and "99.00" not in out
    val0["other-a"], test["other-a"] = 0.57, [0.55]
    names = sorted(val0)
    means = [sum(test[n]) / len(test[n]) for n in names]
    assert _spearman(out, "all") == pytest.approx(stats.spearmanr([val0[n] for n in names], means).statistic, abs=0.005)
    indep = [n for n in names if len(test[n]) > 1]  # luck independent: test of seeds 1+ only
    assert _spearman(out, "independent luck") == pytest.approx(
        stats.spearmanr([val0[n] for n in indep], [sum(test[n][1:]) / (len(test[n]) - 1) for n in indep]).statistic,
        abs=0.005)
    top = sorted(names, key=lambda n: -means[names.index(n)])[:4]
    assert _spearman(out, "all, top 4 on test") == pytest.approx(
        stats.spearmanr([val0[n] for n in top], [means[names.index(n)] for n in top]).statistic, abs=0.005)


def test_interval_holds_the_estimate_and_narrows_with_more_policies():
    lo, hi = proxy_fidelity.interval(0.8, 10)
    assert lo < 0.8 < hi
    lo20, hi20 = proxy_fidelity.interval(0.8, 40)
    assert lo < lo20 and hi20 < hi


@pytest.mark.slow
def test_density_matching_scores_rebuilt_policies_and_skips_a_wrong_hash(tmp_path, capsys):
    overrides = tiny_overrides(tmp_path, **{"evaluation": "density-matching", "density.folds": 2,
                                            "density.copies": 1, "density.cache_dir": str(tmp_path / "models"),
                                            "data.n_train": 300, "training.epochs": 1})
    experiment = tmp_path / "dm.yaml"
    experiment.write_text(yaml.safe_dump(apply_overrides({}, overrides)))
    space = str(ROOT / "search_spaces" / "autoaugment.yaml")
    drawn = load_space(space).random_policy(1001)
    rows = [("none", 0, 0.60, 0.61, builtin("none").digest(), 20),
            ("standard", 0, 0.66, 0.65, builtin("standard").digest(), 20),
            ("random-1", 0, 0.50, 0.52, drawn.digest(), 20),
            ("mislabelled", 0, 0.40, 0.41, "000000000000", 20)]
    path = _write(tmp_path / "runs.csv", rows)
    assert proxy_fidelity.main([path, "--density", str(experiment), "--policy", f"random-1=random:{space}:1001",
                                "--policy", "mislabelled=standard"]) == 0
    out = capsys.readouterr().out
    assert "mislabelled: 'standard' has hash" in out
    section = out.split("\npolicy")[-1]  # the density-matching table
    assert all(name in section for name in ("none", "standard", "random-1"))
    assert re.search(r"^density matching: Spearman [+-][0-9.]+ .* over 3 policies", out, re.M)


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert proxy_fidelity.main([str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read the CSVs" in err
    three = _write(tmp_path / "three.csv", [(n, 0, 0.5, 0.5, f"h{n}", 20) for n in "abc"])
    for flags, says in ((["--density", str(tmp_path / "missing.yaml")], "--density"),
                        (["--density", str(tmp_path / "missing.yaml"), "--policy", "a"], "expected NAME=SOURCE")):
        assert proxy_fidelity.main([three, *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err
    two = _write(tmp_path / "two.csv", [("a", 0, 0.5, 0.5, "ha", 20), ("b", 0, 0.6, 0.6, "hb", 20)])
    assert proxy_fidelity.main([two]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "2 policies have a seed-0 run; 3 or more are needed" in err
