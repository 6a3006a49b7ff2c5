"""Training: the run loop, its two adapters, the options and the strategies.

- :mod:`zoo.train.options`: :class:`FitOptions`, every training option in one validated object;
- :mod:`zoo.train.loop`: the run loop (phases, checkpoints, resume, the run folder's life);
- :mod:`zoo.train.supervised`, :mod:`zoo.train.semi`, :mod:`zoo.train.adapt` and
  :mod:`zoo.train.gan`: what labelled, semi-supervised, domain-adaptive and GAN training add to it;
- :mod:`zoo.train.runfolder`: the run folder's files (state, checkpoints, the resume point);
- :mod:`zoo.train.strategy`: picking and querying the ``tf.distribute`` strategy.

:func:`fit` trains a model with its record; ``zoo.finetune`` (the public verb) resolves what
the user passed into that pair first.
"""
from zoo.errors import InvalidArgumentError
from zoo.train import adapt, gan, semi, supervised
from zoo.train.options import FitOptions
from zoo.train.runfolder import read_state
from zoo.train.strategy import STRATEGIES, get_strategy
from zoo.train.supervised import encoder_layers


def fit(model, info, train="phantoms", val=None, options=None, strategy=None, unlabeled=None):
    """Train ``model``: a GAN with :mod:`zoo.train.gan`, with unlabelled data too by
    :mod:`zoo.train.semi`, anything else with :mod:`zoo.train.supervised`.

    Args:
        model: the ``keras.Model``.
        info: its :class:`zoo.record.ModelInfo`.
        train: the training data (any data source).
        val: the validation data, or None.
        options: a :class:`FitOptions` (default: the defaults).
        strategy: a ``tf.distribute`` strategy (default: ``options.strategy``).
        unlabeled: unlabelled data for ``options.semi`` (:mod:`zoo.train.semi`) or the target
            domain's for ``options.adapt`` (:mod:`zoo.train.adapt`).

    Returns:
        The run's Keras ``History``; the model ends with the run's weights and an updated record.

    Raises:
        InvalidArgumentError: options or data that cannot work with the model (nothing is written then).
        ZooError: the run folder holds another run, the loss became NaN/Inf, or a worker was lost.
    """
    options = options or FitOptions()
    if unlabeled is not None and options.semi is None and options.adapt is None:
        raise InvalidArgumentError("finetune: unlabeled data is used by semi-supervised training or domain "
                                   "adaptation; pass semi='mean_teacher', semi='pseudo_label' or adapt='dann', "
                                   "or leave unlabeled out.")
    strategy = strategy or get_strategy(options.strategy, options.devices)
    if options.adapt is not None:
        if gan.is_gan(model):
            raise InvalidArgumentError(f"finetune: adapt={options.adapt!r} trains classifiers and segmenters, "
                                       "not GANs.")
        return adapt.finetune(model, info, train, val, unlabeled, options, strategy)
    if options.semi is not None:
        if gan.is_gan(model):
            raise InvalidArgumentError(f"finetune: semi={options.semi!r} trains classifiers and segmenters; a GAN "
                                       "learns from unlabelled images already (pass them as train).")
        return semi.finetune(model, info, train, val, unlabeled, options, strategy)
    kind = gan if gan.is_gan(model) else supervised
    return kind.finetune(model, info, train, val, options, strategy)


__all__ = ["fit", "FitOptions", "get_strategy", "read_state", "encoder_layers", "STRATEGIES"]
