"""The one data path: zoo.datapath.prepare and samples, used by every verb."""
import numpy as np
import pytest

import zoo
from zoo.data import phantom_arrays
from zoo.datapath import Target, prepare, samples
from zoo.errors import InvalidArgumentError
from zoo.record import info_of


def _target(**kw):
    model = zoo.load("unet", filters=4, depth=2, num_classes=2, in_channels=1, **kw)
    return model, Target.of(model, info_of(model), 32)


def test_a_small_validation_set_is_read_whole_every_epoch_and_never_runs_out(tmp_path):
    x, y = phantom_arrays(3, size=32, num_classes=2, seed=1)
    _, target = _target()
    val = prepare((x, y), target, "validate", batch_size=2, steps=4)
    assert val.steps == 2 and "fewer than validation_steps=4" in val.notes[0]
    # three epochs with validation_steps larger than the data: val_loss every epoch (issue 24, point 1)
    model = zoo.load("unet", filters=4, depth=2, num_classes=2, in_channels=1)
    history = zoo.finetune(model, phantom_arrays(8, size=32, num_classes=2), (x, y), epochs=3, steps_per_epoch=2,
                           validation_steps=4, out_dir=tmp_path / "run", verbose=0, tensorboard=False)
    assert len(history.history["val_loss"]) == 3 and all(np.isfinite(history.history["val_loss"]))


def test_training_data_repeats_across_epochs_and_validation_patches_are_fixed():
    _, target = _target()
    train = prepare("phantoms", target, "train", batch_size=2, steps=3, options={"n": 4})
    assert train.steps == 3
    batches = [b[0].numpy() for b in train.dataset.take(5)]  # 4 phantoms, 2 per batch: drawn across epochs
    assert all(b.shape == (2, 32, 32, 1) for b in batches)
    a = [x.numpy() for x, _ in prepare("phantoms", target, "validate", batch_size=2).dataset]
    b = [x.numpy() for x, _ in prepare("phantoms", target, "validate", batch_size=2).dataset]
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))


def test_an_endless_stream_needs_steps():
    import tensorflow as tf
    _, target = _target()
    endless = tf.data.Dataset.from_tensors(
        (np.zeros((32, 32, 1), np.float32), np.zeros((32, 32, 1), np.int32))
    ).repeat()
    with pytest.raises(InvalidArgumentError, match=r"endless stream .* pass steps_per_epoch=N \(--steps-per-epoch N\)"):
        prepare(endless, target, "train", batch_size=2)


def test_samples_are_the_held_out_arrays_and_phantoms_ignore_file_preprocessing():
    _, target = _target()
    xs, ys = samples("phantoms", target, 5, preprocessing={"window": [-100, 100]})  # a window is for files
    assert xs.shape == (5, 32, 32, 1) and ys.shape[:3] == (5, 32, 32)
    small = samples("phantoms", target, 2, shape=(8, 8, 1), labels=False)  # cut out of 16-px phantoms
    assert small[0].shape == (2, 8, 8, 1) and small[1] is None
