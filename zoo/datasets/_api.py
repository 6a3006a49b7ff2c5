"""Preparing and loading catalogue data sets: TFDS's ``download_and_prepare`` from ``manual_dir``."""
import os
import sys
from pathlib import Path

from zoo.datasets._catalog import DatasetFilesError, full_name, quiet_tfds, resolve
from zoo.datasets._catalog import builder as make_builder


def _manual(manual_dir, name):
    if manual_dir is None:
        return None
    path = Path(manual_dir).expanduser()
    if not path.is_dir():
        cls, config = resolve(name)
        raise DatasetFilesError(
            f"data set {full_name(cls, config)!r}: manual_dir={str(manual_dir)!r} is not a folder.\n"
            f"create it and place there: {'; '.join(config.files)}\nget them from: {config.source}")
    return path


def _progress():
    """TFDS's progress bars as the zoo's downloads show theirs: on a terminal, or as
    ``ZOO_PROGRESS=1``/``0`` says."""
    setting = os.environ.get("ZOO_PROGRESS", "").strip()
    return {"0": False, "1": True}.get(setting, sys.stderr.isatty())


def prepare(name, *, manual_dir=None, data_dir=None, overwrite=False):
    """Prepare a catalogue data set (once): read its source files from ``manual_dir`` (or
    download them where a public URL with a published checksum exists, never with
    ``ZOO_OFFLINE=1``) and write TFDS's files into ``data_dir`` (default: TFDS's,
    ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``; ``manual_dir`` defaults to
    ``<data_dir>/downloads/manual``). An already prepared data set is reused unless
    ``overwrite=True``. TFDS writes into a temporary folder and renames it when complete, so
    a failed run leaves nothing a later call would use. Returns the TFDS builder.

    Missing or incomplete source files raise ``DatasetFilesError`` listing the exact files
    expected and where to get them.
    """
    import tensorflow_datasets as tfds  # heavy: TFDS imports TensorFlow; import zoo.datasets must not

    from zoo._keras import tf  # noqa: F401 - heavy (as above); TensorFlow comes up with tf_keras as its Keras
    tfds.display_progress_bar(_progress())
    manual = _manual(manual_dir, name)
    with quiet_tfds():
        builder = make_builder(name, data_dir)
        if builder.is_prepared() and not overwrite:
            return builder
        mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
                else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
        config = tfds.download.DownloadConfig(manual_dir=None if manual is None else str(manual),
                                              download_mode=mode)
        builder.download_and_prepare(download_config=config)
    return builder
