"""Training: ``zoo.finetune``, its strategies and its run folder.

``finetune`` (in ``_finetune``) trains on one device, several GPUs or several machines;
``strategy`` picks and queries the ``tf.distribute`` strategy; ``_runs`` writes and reads the run
folder (checkpoints, state, resume point); ``_data`` turns any data source into the batched
dataset a run trains on.
"""
from zoo.train._finetune import encoder_layers, finetune
from zoo.train._runs import load_run, read_state
from zoo.train.strategy import STRATEGIES, get_strategy

__all__ = ["finetune", "get_strategy", "load_run", "read_state", "encoder_layers", "STRATEGIES"]
