"""autoaug.files: atomic writes and the code version."""
import os

import pytest

import autoaug
from autoaug import tracking
from autoaug.files import atomic_path, atomic_write, code_version


def test_atomic_write_replaces_text_and_bytes(tmp_path):
    target = tmp_path / "sub" / "policy.json"  # the folder is created
    atomic_write(target, "old\n")
    atomic_write(str(target), "new\n")
    assert target.read_text() == "new\n"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["policy.json"]


def test_atomic_path_keeps_the_suffix_for_writers_that_read_it(tmp_path):
    from PIL import Image
    target = tmp_path / "grid.png"
    with atomic_path(target) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith("grid.png")
        Image.new("L", (4, 3)).save(tmp)  # Pillow picks PNG from the name
    with Image.open(target) as im:
        assert (im.format, im.size) == ("PNG", (4, 3))
    assert os.listdir(tmp_path) == ["grid.png"]


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "trials.csv"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half a fi")
            raise RuntimeError("disk full")
    assert target.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["trials.csv"]

    class Unwritable:
        def __str__(self):
            raise ValueError("no text")

    with pytest.raises(TypeError):
        atomic_write(target, Unwritable())  # neither str nor bytes: the write itself fails
    assert target.read_text() == "complete\n"
    assert os.listdir(tmp_path) == ["trials.csv"]


def test_a_writer_that_writes_nothing_does_not_replace_the_target(tmp_path):
    target = tmp_path / "models.json"
    target.write_text("{}")
    with pytest.raises(FileNotFoundError):
        with atomic_path(target):
            pass
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["models.json"]


def test_code_version_has_the_package_version():
    version = code_version()
    assert version == autoaug.__version__ or version.startswith(autoaug.__version__ + "+")
    assert tracking.code_version() == version  # still importable where it used to live
