"""Packaging for zoo. The import name is ``zoo``; the distribution is ``medzoo``
because the PyPI name ``zoo`` belongs to an unrelated 2016 project."""
import re
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "zoo" / "_version.py").read_text()).group(1)


class BuildWithRegistry(build_py):
    """Ship the repository-root registry.yaml (as zoo/registry.yaml) and the data-set catalogue's
    builder folders datasets/<name>/ (as zoo/datasets/builders/<name>/) inside the package: a
    top-level datasets/ package would shadow the PyPI package of that name."""

    def run(self):
        super().run()
        target = Path(self.build_lib) / "zoo" / "registry.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HERE / "registry.yaml", target)
        builders = Path(self.build_lib) / "zoo" / "datasets" / "builders"
        for folder in sorted((HERE / "datasets").iterdir()):
            if (folder / f"{folder.name}_dataset_builder.py").is_file():
                shutil.copytree(folder, builders / folder.name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


INSTALL_REQUIRES = [
    "tensorflow>=2.21,<2.22",
    "tf_keras>=2.21,<2.22",
    "tensorflow-model-optimization>=0.8,<0.9",
    "tensorflow-datasets>=4.9,<5",
    "numpy>=1.26,<3",
    "h5py>=3.10,<4",
    "pyyaml>=6.0,<7",
    "scipy>=1.11,<2",
    "tensorboard>=2.20,<3",
    "safetensors>=0.5,<1",  # reads/writes .safetensors weights with validated headers and offsets
    "ai-edge-litert>=2.3,<3",  # the LiteRT interpreter that runs and verifies every export
]

EXTRAS = {
    "nifti": ["nibabel>=5.2,<6"],
    "dicom": ["pydicom>=2.4,<4"],
    "images": ["pillow>=10,<13"],
    "metaimage": ["SimpleITK>=2.3,<3"],  # PROMISE12's .mhd/.raw (zoo.datasets)
    # torchvision: the peer tools/convert_torchvision.py is tested against (tests/tools/test_convert_torchvision.py);
    # 0.29.1 needs torch 2.14.1 (the CPU-only torch 2.13.0 build has no matching torchvision)
    "torch": ["torch==2.14.1", "torchvision==0.29.1"],
}
# monai: the peer the losses and metrics are tested against (tests/test_losses_monai.py);
# dill: tensorflow_datasets.testing (the catalogue builders' DatasetBuilderTestCase) imports it;
# ai-edge-litert: runs the GAN generator's TFLite conversion in tests/train/test_gan_train.py
# ruff: the linter CI runs (ruff.toml; tests/test_architecture.py runs it too)
EXTRAS["test"] = ["pytest>=8,<10", "pytest-xdist>=3.5,<4", "setuptools>=65", "wheel", "monai==1.6.1", "dill>=0.3",
                  "ai-edge-litert>=2.3,<3", "ruff>=0.8,<1", "scikit-image>=0.22,<1"] \
    + EXTRAS["nifti"] + EXTRAS["dicom"] + EXTRAS["images"] + EXTRAS["metaimage"] + EXTRAS["torch"]
EXTRAS["all"] = sorted({r for k, v in EXTRAS.items() if k != "test" for r in v})

setup(
    name="medzoo",
    version=VERSION,
    description="A Keras (tf_keras) model zoo for medical image analysis with a model-hub registry",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["zoo", "zoo.*"]),
    include_package_data=False,
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["zoo=zoo.cli:main"]},
    cmdclass={"build_py": BuildWithRegistry},
    license="Apache-2.0",
)
