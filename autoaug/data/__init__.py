"""Datasets as in-memory numpy arrays, or image files streamed from disk (only re-exports).

``sources``  ``load_dataset`` and its loaders (see its docstring for the sources it accepts)
``folders``  image-folder layouts; one image decoded, turned upright, converted and resized
``stream``   ``ImageFiles``: a file list that stands in for an image array, read through tf.data
``splits``   stratified, deterministic splits and K folds
``cache``    the cache folder: extracted archives, decoded-array caches, the in-process cache
``dataset``  the ``Dataset`` type and ``DataError``
"""
from .cache import ARCHIVE_SUFFIXES, cache_root, clear_cache, extract_archive
from .dataset import DataError, Dataset
from .sources import (DEFAULT_SOURCE, IMAGE_EXTENSIONS, KERAS_DATASETS, NPZ_KEYS, from_arrays, load_dataset,
                      load_experiment_data)
from .splits import fold_indices, reduced_split, split_indices
from .stream import ImageFiles

__all__ = ["ARCHIVE_SUFFIXES", "DEFAULT_SOURCE", "IMAGE_EXTENSIONS", "KERAS_DATASETS", "NPZ_KEYS",
           "DataError", "Dataset", "ImageFiles", "cache_root", "clear_cache", "extract_archive", "fold_indices",
           "from_arrays", "load_dataset", "load_experiment_data", "reduced_split", "split_indices"]
