"""The one data path: any data argument, prepared for a model and a purpose.

- :func:`~zoo.datapath.sources.from_source`: a data argument (a folder, a ``.npz`` file,
  ``"phantoms"``, ``"tfds:NAME"``, arrays, a ``tf.data.Dataset``) -> checked (image, label) pairs,
  read by :mod:`zoo.data`'s readers or the catalogue's (:mod:`zoo.datasets`);
- :func:`~zoo.datapath.prepare.prepare`: those pairs ready to train or validate a model
  (:class:`~zoo.datapath.prepare.Target`): patches, shuffling, batches, steps per epoch;
- :func:`~zoo.datapath.prepare.samples`: the first samples as arrays (held-out scores, an
  export's calibration and verification).

Every verb reads its data here, so ``train=``, ``val=`` and ``representative_data=`` accept the
same sources everywhere.
"""
from zoo.datapath.prepare import Prepared, Target, prepare, samples
from zoo.datapath.sources import LAYOUTS, class_names_of, from_source, inspect_source

__all__ = ["from_source", "class_names_of", "inspect_source", "prepare", "samples", "Target", "Prepared", "LAYOUTS"]
