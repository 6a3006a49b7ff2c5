"""The readers under fuzz (tests/_fuzz.py): for each kind, the valid seed files, how case ``i`` is made
from them (tests/_fuzz_mutate.py, tests/_fuzz_images.py), and the oracle run on it."""
import hashlib
import io
import os
import time
from pathlib import Path

import _fuzz_images as MI
import _fuzz_mutate as M
import numpy as np


class Invalid(AssertionError):
    """A case succeeded but its result is not valid (accepted garbage)."""


def check(cond, what):
    if not cond:
        raise Invalid(what)


class Kind:
    def __init__(self, work):
        self.work = Path(work)
        self.seeds = self.work / "seeds"
        self.seeds.mkdir(parents=True, exist_ok=True)

    def case_dir(self, i):
        d = self.work / "cases" / str(i)
        d.mkdir(parents=True, exist_ok=True)
        return d


def _tiny_classifier():
    from zoo._keras import keras
    L = keras.layers
    x = inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="stem_conv")(x)
    x = L.Activation("relu")(L.BatchNormalization(name="stem_bn")(x))
    x = L.Conv2D(6, 3, padding="same", name="stage1_conv")(x)
    x = L.GlobalAveragePooling2D(name="head_pool")(x)
    return keras.Model(inputs, L.Dense(3, name="classifier")(x), name="tiny")


def _conv3d():
    from zoo._keras import keras
    x = inputs = keras.Input((None, None, None, 1))
    x = keras.layers.Conv3D(2, 1, name="classifier")(x)
    return keras.Model(inputs, x)


class Weights(Kind):
    formats = ("h5", "weights.h5", "npz", "safetensors")

    def __init__(self, work):
        super().__init__(work)
        import zoo
        self.model = _tiny_classifier()
        rng = np.random.default_rng(0)
        for w in self.model.weights:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        self.snapshot = [np.array(w) for w in self.model.get_weights()]
        for fmt in self.formats:
            zoo.save_weights(self.model, self.seeds / f"w.{fmt}", verbose=False)
        with np.load(self.seeds / "w.npz") as f:
            self.arrays = {k: f[k] for k in f.files}

    def make(self, rng, i):
        fmt = self.formats[i % 4]
        path = self.case_dir(i) / f"w.{fmt}"
        seed = (self.seeds / f"w.{fmt}").read_bytes()
        if fmt == "npz":
            desc, data = M.mutate_npz(rng, self.arrays)
        elif fmt == "safetensors":
            desc, data = M.mutate_safetensors(rng, seed)
        elif rng.random() < 0.3:
            desc, data = M.mutate_bytes(rng, seed)
        else:
            path.write_bytes(seed)
            return f"{fmt}: " + M.mutate_h5(rng, path, fmt), path
        path.write_bytes(data)
        return f"{fmt}: {desc}", path

    def run(self, path):
        from zoo.hub.weights import load_weights_into
        try:
            load_weights_into(self.model, weights=str(path))
        except BaseException:
            for a, b in zip(self.snapshot, self.model.get_weights()):
                check(np.array_equal(a, b, equal_nan=True), "a failed load changed the model's weights")
            raise
        for w in self.model.get_weights():
            check(w.dtype == np.float32 and np.all(np.isfinite(w)), f"loaded weights hold NaN/Inf or {w.dtype}")
        self.model.set_weights(self.snapshot)


class Nifti(Kind):
    def __init__(self, work):
        super().__init__(work)
        import nibabel as nib
        image = np.random.default_rng(0).normal(size=(6, 5, 4)).astype("float32")
        img = nib.Nifti1Image(image, np.diag([1.5, 2.0, 2.5, 1.0]))
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
        nib.save(img, self.seeds / "v.nii")
        self.model = _conv3d()

    def make(self, rng, i):
        import gzip
        desc, data = MI.mutate_nifti(rng, (self.seeds / "v.nii").read_bytes())
        gz = rng.random() < 0.3
        path = self.case_dir(i) / ("v.nii.gz" if gz else "v.nii")
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        return desc + (" (gzipped)" if gz else ""), path

    def run(self, path):
        from zoo.data import load_nifti
        out = path.with_name("seg.nii.gz")
        try:
            volume, spacing, affine = load_nifti(path)
        except BaseException:
            _predict_refused(self.model, path, out)
            raise
        _valid_volume(volume, spacing, affine)
        import nibabel as nib
        _predict_writes(self.model, path, out, nib.load(str(path)).shape[:3])


class Dicom(Kind):
    def __init__(self, work):
        super().__init__(work)
        self.files = {}
        for k in range(3):
            self.files[f"IM{k}.dcm"] = _dicom_slice(k)
        self.model = _conv3d()

    def make(self, rng, i):
        desc, files = MI.mutate_dicom_series(rng, self.files)
        folder = self.case_dir(i) / "series"
        folder.mkdir(exist_ok=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
        return desc, folder

    def run(self, folder):
        from zoo.data import read_dicom_series
        out = folder.with_name("seg.nii.gz")
        try:
            volume, spacing, affine = read_dicom_series(folder)
        except BaseException:
            _predict_refused(self.model, folder, out)
            raise
        _valid_volume(volume, spacing, affine)
        _predict_writes(self.model, folder, out, volume.shape[:3])


def _dicom_slice(k):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = f"1.2.3.4.5.{k}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, f"1.2.3.4.5.{k}", "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.4", "1.2.3.4.6"
    ds.Rows, ds.Columns, ds.PixelSpacing, ds.SliceThickness, ds.NumberOfFrames = 4, 3, [0.5, 0.7], 2.5, 1
    ds.ImageOrientationPatient, ds.ImagePositionPatient = [1, 0, 0, 0, 1, 0], [5.0, -3.0, 7.0 + 2.5 * k]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = (np.arange(12).reshape(4, 3) + 100 * k).astype(np.int16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _valid_volume(volume, spacing, affine):
    check(volume.ndim == 4 and volume.size > 0 and volume.dtype == np.float32, f"volume {volume.shape} {volume.dtype}")
    check(len(spacing) == 3 and all(np.isfinite(s) and s > 0 for s in spacing), f"spacing {spacing}")
    check(np.all(np.isfinite(affine)) and abs(np.linalg.det(affine[:3, :3])) > 1e-12, f"affine {affine.tolist()}")


def _predict_refused(model, source, out):
    import zoo
    from zoo.errors import ZooError
    try:
        zoo.predict(model, source, out=out, patch_size=(4, 4, 4))
    except ZooError:
        check(not out.exists(), f"a refused predict left {out}")
        return
    raise Invalid("the reader refused the file but predict accepted it")


def _predict_writes(model, source, out, shape):
    import nibabel as nib

    import zoo
    from zoo.errors import ZooError
    try:
        zoo.predict(model, source, out=out, patch_size=(4, 4, 4))
    except ZooError:  # e.g. NaN voxels, refused by predict's own checks
        check(not out.exists(), f"a refused predict left {out}")
        return
    img = nib.load(str(out))
    check(img.shape[:3] == tuple(shape), f"output shape {img.shape} for a volume {shape}")
    zooms = img.header.get_zooms()[:3]  # a 2D input gives a 2D output: 2 zooms
    check(len(zooms) >= 2 and all(np.isfinite(z) and z > 0 for z in zooms), f"output voxel sizes {zooms}")
    check(np.all(np.isfinite(img.affine)) and abs(np.linalg.det(img.affine[:3, :3])) > 1e-12, "output affine")


class Registry(Kind):
    def __init__(self, work):
        super().__init__(work)
        import yaml

        import zoo
        model = zoo.load("unet", filters=4, depth=2, dropout=0.0, in_channels=1, num_classes=2)
        saved = zoo.save_weights(model, self.seeds / "unet.npz", verbose=False)
        self.good_hashes = {saved.sha256}
        weight = {"url": (self.seeds / "unet.npz").as_uri(), "hash": f"sha256:{saved.sha256}", "size": saved.size,
                  "format": "npz", "in_channels": 1, "num_classes": 2, "spatial_dims": 2,
                  "config": {"filters": 4, "depth": 2}, "preprocessing": {"mode": "zscore", "size": 16},
                  "labels": ["background", "lesion"], "license": "CC0", "source": "fuzz seed", "notes": ["a", "b"]}
        self.data = {
            "contracts": {"fz_contract": {"first_conv": "stem_conv", "classifier": ["classifier"]}},
            "recipes": {"fz_prune": {"kind": "prune", "final_sparsity": 0.5}},
            "models": {"fz_unet": {
                "builder": "zoo.models.unet:unet", "config": {"filters": 4, "depth": 2, "dropout": 0.0},
                "task": "segmentation", "spatial_dims": [2, 3], "input": {"channels": 1, "size": 16, "min_size": 4},
                "params": 1, "trainable_params": 1, "reference": {"num_classes": 2},
                "sweep": {"size": 16, "config": {"filters": 2}, "dims": [2]}, "paper": "Ronneberger 2015",
                "notes": "fuzz seed", "mirrors": "nothing", "weights": {"w": weight}, "recipes": ["fz_prune"],
                "contract": "fz_contract"}},
            "weights": {"fz_unet": {"w2": dict(weight, notes="second tag")}},
        }
        self.text = yaml.safe_dump(self.data, sort_keys=False)
        (self.seeds / "reg.yaml").write_text(self.text)

    def make(self, rng, i):
        desc, data = M.mutate_registry(rng, self.data, self.text)
        path = self.case_dir(i) / "reg.yaml"
        path.write_bytes(data)
        return desc, path

    def run(self, path):
        from zoo._keras import keras
        from zoo.hub import _schema
        from zoo.hub.api import build_kwargs
        from zoo.hub.registry import get_registry
        from zoo.hub.weights import load_weights_into
        os.environ["ZOO_REGISTRY"] = str(path)  # as a user names a registry file
        try:
            reg = get_registry(reload=True)
            for name, entry in reg.models.items():
                if entry.origin != str(path):
                    continue
                check(_schema.NAME_PATTERN.fullmatch(name), f"entry name {name!r} accepted")
                check(isinstance(entry.params, int) and not isinstance(entry.params, bool), "params type")
                check(all(type(d) is int for d in entry.spatial_dims), f"spatial_dims {entry.spatial_dims}")
                for tag, spec in entry.weights.items():
                    check(_schema.NAME_PATTERN.fullmatch(tag) and isinstance(spec.url, str), f"weights {tag!r}")
                    check(spec.size is None or type(spec.size) is int, f"size {spec.size!r}")
                builder, kwargs = build_kwargs(entry, {"input_shape": (16, 16, 1)})
                keras.backend.clear_session()
                model = builder(**kwargs)
                for tag in entry.weights:
                    load_weights_into(model, entry=entry, weights=tag, build_kwargs=kwargs)
        finally:
            self._cache_clean()

    def _cache_clean(self):
        home = Path(os.environ["ZOO_HOME"])
        for f in home.rglob("*") if home.exists() else ():
            check(not f.name.endswith(".part"), f"partial download left: {f}")
            if f.is_file() and not f.name.endswith((".lock", ".verified", ".tmp")):
                digest = hashlib.sha256(f.read_bytes()).hexdigest()
                check(digest in self.good_hashes, f"unverified file in the weights cache: {f}")


class SelfTest(Kind):
    """The harness's own check: case 0 passes, 1 hangs, 2 raises a raw error, 3 a ZooError, 4 kills
    the worker, 5 accepts garbage."""

    def make(self, rng, i):
        return f"self-test case {i}", i

    def run(self, i):
        from zoo.errors import ZooError
        if i == 1:
            time.sleep(3600)
        if i == 2:
            raise KeyError("raw")
        if i == 3:
            raise ZooError("clean")
        if i == 4:
            os._exit(3)
        check(i != 5, "garbage accepted")


CLASSES = {"registry": Registry, "weights": Weights, "nifti": Nifti, "dicom": Dicom, "selftest": SelfTest}
