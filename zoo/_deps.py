"""Optional dependencies: import one, or say which ``pip install`` brings it."""
import importlib

from zoo.errors import MissingDependencyError

EXTRAS = {"nibabel": "nifti", "pydicom": "dicom", "PIL": "images", "SimpleITK": "metaimage"}  # medzoo extras
PIP_NAMES = {"scipy": "scipy", "tensorflow_datasets": "tensorflow-datasets"}  # core dependencies


def require(module, feature):
    """Import an optional dependency or raise MissingDependencyError with the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        cmd = (f'pip install "medzoo[{EXTRAS[top]}]"' if top in EXTRAS
               else f"pip install {PIP_NAMES.get(top, top)}")
        raise MissingDependencyError(
            f"{feature} needs the package {top!r}, which is not installed. Install it with: {cmd}") from None
