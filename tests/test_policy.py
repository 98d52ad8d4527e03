import json

import pytest

import autoaug
from autoaug.policy import Policy, PolicyError, Step, builtin


@pytest.mark.parametrize("name", ["none", "standard", "autoaugment-cifar10", "randaugment",
                                  "randaugment-n1-m5", "trivialaugment-wide",
                                  "autoaugment-cifar10+standard+cutout"])
def test_builtin_json_round_trip(name, tmp_path):
    policy = builtin(name)
    again = Policy.from_json(policy.to_json())
    assert again == policy
    path = tmp_path / "p.json"
    policy.save(str(path))
    assert autoaug.load_policy(str(path)) == policy
    assert json.loads(path.read_text())["schema_version"] == 1


def test_published_autoaugment_policy_shape():
    p = builtin("autoaugment-cifar10")
    assert len(p.sub_policies) == 25 and all(len(sp) == 2 for sp in p.sub_policies)
    assert p.sub_policies[1] == (Step("Rotate", 0.7, 2.0), Step("TranslateX", 0.3, 9.0))


def test_randaugment_is_uniform_over_op_tuples():
    p = builtin("randaugment")
    assert len(p.sub_policies) == 14 ** 2
    assert {s.level for sp in p.sub_policies for s in sp} == {9.0}


def test_stage_order_is_part_of_the_policy():
    a = builtin("autoaugment-cifar10").with_stages(["flip", "policy", "crop"])
    b = builtin("autoaugment-cifar10").with_stages(["policy", "flip", "crop"])
    assert a != b and a.digest() != b.digest()
    assert [getattr(s, "op", s) for s in a.stages] == ["FlipLR", "policy", "PadCrop"]


BAD = [
    ("not json", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('{"schema_version": "1"}', "unsupported schema_version '1'"),
    ('{"schema_version": 1, "sub_policies": [[{"op": "Blur", "p": 1, "level": 1}]]}', "unknown op 'Blur'"),
    ('{"schema_version": 1, "sub_policies": [[{"op": "Rotate", "p": 1.5, "level": 1}]]}', "outside [0, 1]"),
    ('{"schema_version": 1, "sub_policies": [[{"op": "Rotate", "p": 0.5, "level": 11}]]}', "outside 0..10"),
    ('{"schema_version": 1, "sub_policies": [[{"op": "Rotate", "p": "x", "level": 1}]]}', "p must be a number"),
    ('{"schema_version": 1, "sub_policies": [[]]}', "sub-policy 0 is empty"),
    ('{"schema_version": 1, "sub_policies": {}}', "must be a list"),
    ('{"schema_version": 1, "sub_policies": [[{"op": "MixUp", "p": 1, "level": 1}]]}', "use it as a stage"),
    ('{"schema_version": 1, "stages": ["policy", "policy"]}', "more than once"),
    ('{"schema_version": 1, "stages": ["blur"]}', "stage 0: unknown stage 'blur'"),
    ('{"schema_version": 1, "ranges": "huge"}', "ranges must be"),
    ('{"schema_version": 1, "colour": 1}', "unknown policy keys: colour"),
    ('{"schema_version": 3}', "unsupported schema_version 3"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_malformed_policies_give_one_clear_line(text, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        autoaug.load_policy(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_builtin_and_missing_file():
    with pytest.raises(PolicyError, match="unknown policy 'autoaugment-imagenet'"):
        autoaug.load_policy("autoaugment-imagenet")
    with pytest.raises(PolicyError, match="cannot read policy file"):
        autoaug.load_policy("/nonexistent/policy.json")
    with pytest.raises(PolicyError, match="unknown stage 'blur'"):
        builtin("standard+blur")


def test_digest_ignores_name_and_provenance():
    p = builtin("autoaugment-cifar10")
    q = Policy(p.sub_policies, p.stages, p.ranges, "renamed", {"trial": 3})
    assert p.digest() == q.digest()
