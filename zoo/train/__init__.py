"""Training: the run loop, its two adapters, the options and the strategies.

- :mod:`zoo.train.options`: :class:`FitOptions`, every training option in one validated object;
- :mod:`zoo.train.loop`: the run loop (phases, checkpoints, resume, the run folder's life);
- :mod:`zoo.train.supervised` and :mod:`zoo.train.gan`: what labelled and GAN training add to it;
- :mod:`zoo.train.runfolder`: the run folder's files (state, checkpoints, the resume point);
- :mod:`zoo.train.strategy`: picking and querying the ``tf.distribute`` strategy.

:func:`fit` trains a model with its record; ``zoo.finetune`` (the public verb) resolves what
the user passed into that pair first.
"""
from zoo.train import gan, supervised
from zoo.train.options import FitOptions
from zoo.train.runfolder import read_state
from zoo.train.strategy import STRATEGIES, get_strategy
from zoo.train.supervised import encoder_layers


def fit(model, info, train="phantoms", val=None, options=None, strategy=None):
    """Train ``model``: a GAN with :mod:`zoo.train.gan`, anything else with :mod:`zoo.train.supervised`.

    Args:
        model: the ``keras.Model``.
        info: its :class:`zoo.record.ModelInfo`.
        train: the training data (any data source).
        val: the validation data, or None.
        options: a :class:`FitOptions` (default: the defaults).
        strategy: a ``tf.distribute`` strategy (default: ``options.strategy``).

    Returns:
        The run's Keras ``History``; the model ends with the run's weights and an updated record.

    Raises:
        InvalidArgumentError: options or data that cannot work with the model (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    options = options or FitOptions()
    strategy = strategy or get_strategy(options.strategy, options.devices)
    kind = gan if gan.is_gan(model) else supervised
    return kind.finetune(model, info, train, val, options, strategy)


__all__ = ["fit", "FitOptions", "get_strategy", "read_state", "encoder_layers", "STRATEGIES"]
