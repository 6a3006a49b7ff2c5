"""Small image files the tests write: PNGs, NIfTI volumes, DICOM series and folders laid out as
the readers expect (used by tests in data/, train/, export/, hub/ and the top-level ones)."""
import nibabel as nib
import numpy as np
from PIL import Image


def _png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def _nii(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    affine = np.diag(list(spacing) + [1.0])
    affine[:3, 3] = origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _dicom_slice(path, index, position, series, orientation, rows=4, cols=3):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CT_IMAGE_STORAGE, sop, "CT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1", series
    ds.Rows, ds.Columns, ds.PixelSpacing = rows, cols, [0.5, 0.7]
    ds.ImageOrientationPatient, ds.ImagePositionPatient = orientation, list(position)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.PixelData = (np.arange(rows * cols).reshape(rows, cols) + 100 * index).astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def _series(folder, order, orientation=(1, 0, 0, 0, 1, 0), normal=(0, 0, 1), gap=2.5, series="1.2.3.4"):
    folder.mkdir(parents=True, exist_ok=True)
    for n, k in enumerate(order):  # file names and write order unrelated to slice order
        _dicom_slice(folder / f"IM{n:04d}.dcm", k, np.array([5.0, -3.0, 7.0]) + k * gap * np.array(normal),
                     series, list(orientation))
    return folder


def _dicom_root(root, cases, label_ext=".npy"):
    for i, (case, order) in enumerate(cases.items()):
        _series(root / "images" / case, order, series=f"1.2.3.{i}")
        label = np.zeros((3, 4, len(order)), np.uint8)
        label[1, 2, 0] = 1
        if label_ext == ".npy":
            (root / "labels").mkdir(parents=True, exist_ok=True)
            np.save(root / "labels" / f"{case}.npy", label)
        else:
            _nii(root / "labels" / f"{case}{label_ext}", label)


def make_class_folders(root, n_train=6, n_val=2, size=40):
    """root/{train,val}/{clock,disc}/*.png: a bar vs a disc on noise (learnable in one epoch)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    for split, n in (("train", n_train), ("val", n_val)):
        for cls in ("clock", "disc"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                a = (rng.random((size, size, 3)) * 60).astype(np.uint8)
                if cls == "disc":
                    a[(yy - size // 2) ** 2 + (xx - size // 2) ** 2 < size * 3] = 230
                else:
                    a[size // 5:-size // 5, size // 2 - 2:size // 2 + 2] = 230
                Image.fromarray(a).save(folder / f"{cls}{i}.png")
    return root / "train", root / "val"


