"""Datasets as in-memory numpy arrays (only re-exports; the code is in the modules).

``sources``  ``load_dataset`` and its loaders (see its docstring for the sources it accepts)
``splits``   stratified, deterministic splits and K folds
``cache``    the cache folder: extracted archives, decoded-array caches, the in-process cache
``dataset``  the ``Dataset`` type and ``DataError``
"""
from .cache import ARCHIVE_SUFFIXES, cache_root, clear_cache, extract_archive
from .dataset import DataError, Dataset
from .sources import (DEFAULT_SOURCE, IMAGE_EXTENSIONS, KERAS_DATASETS, NPZ_KEYS, from_arrays, load_dataset,
                      load_experiment_data)
from .splits import fold_indices, reduced_split, split_indices

__all__ = ["ARCHIVE_SUFFIXES", "DEFAULT_SOURCE", "IMAGE_EXTENSIONS", "KERAS_DATASETS", "NPZ_KEYS",
           "DataError", "Dataset", "cache_root", "clear_cache", "extract_archive", "fold_indices",
           "from_arrays", "load_dataset", "load_experiment_data", "reduced_split", "split_indices"]
