"""The catalogue's TFDS builder folders as one package: ``zoo.datasets.builders.<name>``.

An installed wheel holds the folders here (setup.py copies the repository's top-level
``datasets/`` folder in). In a source checkout (or an editable install) they stay in
``datasets/``, and this package's ``__path__`` includes that folder. Either way the builders
import as ``zoo.datasets.builders.<name>.<name>_dataset_builder``, and ``datasets/`` is never
put on ``sys.path`` (its name would shadow the PyPI package ``datasets``).
"""
from pathlib import Path

_checkout = Path(__file__).resolve().parents[3]
if (_checkout / "setup.py").is_file() and (_checkout / "registry.yaml").is_file() \
        and (_checkout / "datasets").is_dir():
    __path__.append(str(_checkout / "datasets"))  # noqa: F821 - a package's __path__
