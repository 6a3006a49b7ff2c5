"""zoo.train.FitOptions: the one object of training options the verbs pass along."""
import pytest

import zoo
from zoo.errors import InvalidArgumentError, UnknownArgumentError
from zoo.train import FitOptions


def test_an_unknown_option_names_the_nearest_one():
    with pytest.raises(
        UnknownArgumentError, match=r"finetune: unknown option 'learnig_rate'\. Did you mean 'learning_rate'"
    ):
        FitOptions.build(learnig_rate=1e-3)
    model = zoo.load("unet", filters=4, depth=2)
    with pytest.raises(UnknownArgumentError, match=r"unknown option 'epoch'\. Did you mean 'epochs'"):
        zoo.finetune(model, epoch=3)
    with pytest.raises(UnknownArgumentError, match=r"compress: unknown option 'train_data'"):
        zoo.compress(model, "prune_50", train_data="phantoms")


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "epochs=0 must be a positive integer"),
    (dict(epochs=3, freeze_encoder_epochs=3), r"freeze_encoder_epochs=3 must be an integer in \[0, epochs=3\)"),
    (dict(optimizer="adagrad"), "optimizer='adagrad' is not supported"),
    (dict(learning_rate=-1), "learning_rate=-1 must be a number >= 0"),
    (dict(batch_size=True), "batch_size=True must be a positive integer"),
    (dict(data_options=["window"]), "data_options=.* must be a dict"),
])
def test_each_option_is_checked_when_made(bad, match):
    with pytest.raises(InvalidArgumentError, match=match):
        FitOptions(**bad)


def test_keywords_win_over_an_options_object_and_the_object_is_never_changed():
    base = FitOptions(epochs=5, learning_rate=1e-4)
    merged = FitOptions.build(base, epochs=2)
    assert (merged.epochs, merged.learning_rate) == (2, 1e-4) and base.epochs == 5
    with pytest.raises(InvalidArgumentError, match="options must be a zoo.train.FitOptions"):
        FitOptions.build({"epochs": 2})


def test_a_seeded_finetune_repeats(tmp_path):
    import numpy as np

    from zoo.train.loop import seed_everything
    weights = []
    for k in range(2):
        seed_everything(3)
        model = zoo.load("unet", filters=4, depth=2)  # its initialisers draw from the seeded state
        zoo.finetune(model, "phantoms", epochs=1, steps_per_epoch=2, patch_size=32, seed=3, verbose=0,
                     tensorboard=False, out_dir=tmp_path / f"r{k}")
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)
