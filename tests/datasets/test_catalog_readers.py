"""What the catalogue builders store equals what independent readers see in the source files
(Pillow, nibabel, SimpleITK, numpy, MONAI's Decathlon split), and ``tfds:NAME`` data go through
the same preprocessing as the file-based sources."""
import json
from pathlib import Path

import numpy as np
import pytest
from _proc import ROOT

import zoo
import zoo.datasets as zd
from zoo.errors import ZooError


def dummy(name):
    return ROOT / "datasets" / name / "dummy_data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def raw(name, split, data_dir):
    import tensorflow_datasets as tfds
    ds = zd.load(name, split=split, manual_dir=dummy(name.split("/")[0]), data_dir=data_dir, raw=True)
    return list(tfds.as_numpy(ds))


def test_isbi_slices_and_membrane_labels_match_the_tiff_pages(data_dir):
    from PIL import Image, ImageSequence
    pages = {}
    for f in ("train-volume.tif", "train-labels.tif"):
        with Image.open(dummy("isbi2012_em") / f) as im:
            pages[f] = [np.array(p) for p in ImageSequence.Iterator(im)]
    for split, index in (("train", range(5)), ("validation", [5])):
        examples = {ex["id"].decode(): ex for ex in raw("isbi2012_em", split, data_dir)}
        assert sorted(examples) == [f"slice_{i:02d}" for i in index]
        for i in index:
            ex = examples[f"slice_{i:02d}"]
            np.testing.assert_array_equal(ex["image"][..., 0], pages["train-volume.tif"][i])
            np.testing.assert_array_equal(ex["label"][..., 0], pages["train-labels.tif"][i] == 0)  # 1 = membrane


def test_decathlon_cases_match_nibabel_and_monais_split(data_dir):
    import nibabel as nib
    from monai.apps import DecathlonDataset
    for task, config in (("Task02_Heart", "task02_heart"), ("Task05_Prostate", "task05_prostate")):
        folder = dummy("decathlon") / task
        for split, section in (("train", "training"), ("validation", "validation")):
            examples = raw(f"decathlon/{config}", split, data_dir)
            monai = DecathlonDataset(str(dummy("decathlon")), task, section, transform=(), download=False,
                                     seed=0, val_frac=0.2, cache_rate=0.0, progress=False)
            assert sorted(ex["id"].decode() for ex in examples) == \
                sorted(Path(d["image"]).name[:-7] for d in monai.data)
            for ex in examples:
                case = ex["id"].decode()
                img = nib.load(str(folder / "imagesTr" / f"{case}.nii.gz"))
                image = np.asarray(img.get_fdata(), np.float32)
                np.testing.assert_array_equal(ex["image"], image if image.ndim == 4 else image[..., None])
                np.testing.assert_array_equal(ex["label"], nib.load(str(folder / "labelsTr" / f"{case}.nii.gz"))
                                              .get_fdata().astype(np.uint8))
                np.testing.assert_allclose(ex["affine"], img.affine)
                np.testing.assert_allclose(ex["spacing"], img.header.get_zooms()[:3])
        channels = json.loads((folder / "dataset.json").read_text())["modality"]
        assert examples[0]["image"].shape[-1] == len(channels)


@pytest.mark.parametrize("n", [5, 7, 50, 210])
def test_validation_split_is_monais_decathlon_split(n):
    from monai.apps import DecathlonDataset

    from zoo.datasets._kit import validation_split
    cases = [{"image": f"./imagesTr/case_{i:03d}.nii.gz"} for i in range(n)]
    got = validation_split(cases)
    for section, mine in (("training", got[0]), ("validation", got[1])):
        monai = object.__new__(DecathlonDataset)  # its split alone, without files
        monai.section, monai.val_frac = section, 0.2
        monai.set_random_state(seed=0)
        assert mine == monai._split_datalist(list(cases)), section


def test_promise12_volumes_match_simpleitk_and_their_affine_maps_voxels_to_ras(data_dir):
    import SimpleITK as sitk
    examples = raw("promise12", "train", data_dir) + raw("promise12", "validation", data_dir)
    assert sorted(ex["id"].decode() for ex in examples) == [f"Case{k:02d}" for k in range(5)]
    for ex in examples:
        case = ex["id"].decode()
        folder = dummy("promise12") / "TrainingData_Part2"
        if not (folder / f"{case}.mhd").exists():
            continue  # Case00-02 are inside TrainingData_Part1.zip
        img = sitk.ReadImage(str(folder / f"{case}.mhd"))
        np.testing.assert_array_equal(ex["image"][..., 0], np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0)))
        seg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{case}_segmentation.mhd")))
        np.testing.assert_array_equal(ex["label"], np.transpose(seg, (2, 1, 0)))
        np.testing.assert_allclose(ex["spacing"], img.GetSpacing(), rtol=1e-6)
        for index in ((0, 0, 0), (3, 1, 2), (5, 5, 3)):
            lps = np.asarray(img.TransformIndexToPhysicalPoint(index))
            ras = ex["affine"] @ np.array([*index, 1.0])
            np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-6)
    assert len([ex for ex in examples if ex["id"].decode() in ("Case03", "Case04")]) == 2


@pytest.mark.parametrize("config, file", [("pathmnist_28", "pathmnist.npz"), ("chestmnist_64", "chestmnist_64.npz"),
                                          ("organmnist3d_28", "organmnist3d.npz")])
def test_medmnist_examples_are_the_npz_arrays_in_order(config, file, data_dir):
    with np.load(dummy("medmnist") / file) as npz:
        for split, key in (("train", "train"), ("validation", "val"), ("test", "test")):
            examples = raw(f"medmnist/{config}", split, data_dir)
            images, labels = npz[f"{key}_images"], npz[f"{key}_labels"]
            got = {ex["image"].tobytes(): ex["label"] for ex in examples}  # TFDS stores in its own order
            assert len(got) == len(images)
            for image, label in zip(images, labels):
                stored = got[(image if image.ndim == 3 and image.shape[-1] == 3 else image[..., None]).tobytes()]
                np.testing.assert_array_equal(stored, label if config.startswith("chest") else label[0])


def test_camvid_frames_and_void_class_match_the_pngs(data_dir):
    from PIL import Image
    folder = dummy("camvid") / "CamVid"
    for split, sub in (("train", "train"), ("validation", "val"), ("test", "test")):
        listed = [line.split()[0].split("/")[-1][:-4] for line in (folder / f"{sub}.txt").read_text().splitlines()]
        examples = raw("camvid", split, data_dir)
        assert sorted(ex["id"].decode() for ex in examples) == sorted(listed)
        for ex in examples:
            name = ex["id"].decode()
            np.testing.assert_array_equal(ex["image"], np.array(Image.open(folder / sub / f"{name}.png")))
            np.testing.assert_array_equal(
                ex["label"][..., 0], np.array(Image.open(folder / f"{sub}annot" / f"{name}.png"))
            )
    assert max(int(ex["label"].max()) for ex in raw("camvid", "train", data_dir)) == 11  # void is class 11


def test_phantoms_splits_are_the_finetune_defaults(data_dir):
    from zoo.data import phantom_arrays
    from zoo.datapath import from_source
    train = raw("phantoms/seg2d", "train", data_dir)
    images, labels = phantom_arrays(64, size=64, seed=0)
    stored = {ex["image"].tobytes(): ex["label"] for ex in train}
    assert len(stored) == 64
    for image, label in zip(images, labels):
        np.testing.assert_array_equal(stored[image.tobytes()], label)
    default_val = [x.tobytes() for x, _ in from_source("phantoms", training=False, num_classes=2).as_numpy_iterator()]
    assert sorted(default_val) == sorted(ex["image"].tobytes() for ex in raw("phantoms/seg2d", "validation", data_dir))
    vol = raw("phantoms/seg3d", "test", data_dir)[0]
    assert vol["image"].shape == (32, 32, 32, 1) and vol["label"].shape == (32, 32, 32)
    np.testing.assert_array_equal(vol["affine"], np.eye(4))
    np.testing.assert_array_equal(vol["spacing"], [1, 1, 1])


def test_a_volume_example_goes_back_to_nifti_on_its_grid_and_predict_keeps_it(data_dir, tmp_path):
    import nibabel as nib
    example = raw("promise12", "validation", data_dir)[0]  # affine from ITK's LPS, spacing from the .mhd
    path = zd.write_nifti(example, tmp_path / "case.nii.gz")
    img = nib.load(str(path))
    np.testing.assert_array_equal(img.get_fdata(), example["image"][..., 0])
    np.testing.assert_allclose(img.affine, example["affine"], atol=1e-5)
    np.testing.assert_allclose(img.header.get_zooms(), example["spacing"], rtol=1e-6)
    with pytest.raises(ZooError, match="exists; pass overwrite=True"):
        zd.write_nifti(example, path)
    zd.write_nifti(example, tmp_path / "label.nii", example["label"])
    np.testing.assert_array_equal(nib.load(str(tmp_path / "label.nii")).get_fdata(), example["label"])
    model = zoo_unet3d()
    labels = zoo.predict(model, str(path), out=str(tmp_path / "seg.nii.gz"), patch_size=(4, 4, 4))
    seg = nib.load(str(tmp_path / "seg.nii.gz"))
    assert seg.shape == example["label"].shape and labels.shape == example["label"].shape
    np.testing.assert_allclose(seg.affine, example["affine"], atol=1e-5)
    with pytest.raises(ZooError, match=r"the example has no \['affine', 'spacing'\]"):
        zd.write_nifti(raw("isbi2012_em", "validation", data_dir)[0], tmp_path / "x.nii.gz")


def zoo_unet3d():
    return zoo.load("unet", spatial_dims=3, filters=2, depth=1, dropout=0.0)


# ------------------------------------------------------------------- the tfds: data source
def _pairs(ds):
    return [(x, y) for x, y in ds.as_numpy_iterator()]


def _case_order(name, split, data_dir):
    return [ex["id"].decode() for ex in raw(name, split, data_dir)]


@pytest.mark.parametrize("options", [
    dict(normalize="zscore"),
    dict(window=(90, 140), spacing=(2.5, 2.5, 3.0)),
    dict(patch_size=(4, 4, 4), samples_per_volume=3, fg_fraction=0.5),
])
def test_volumes_get_the_nifti_pipeline(options, data_dir):
    """tfds:decathlon/... gives exactly what zoo.data.nifti gives for the same files: the same
    resampling, intensity scaling and (seeded, foreground-aware) patches."""
    from zoo.data import nifti
    from zoo.datapath import from_source
    name = "decathlon/task03_liver"
    folder = dummy("decathlon") / "Task03_Liver"
    for training, split in ((True, "train"), (False, "validation")):
        order = _case_order(name, split, data_dir)
        got = from_source(f"tfds:{name}", training=training, task="segmentation", spatial_dims=3,
                          num_classes=3, seed=5, data_dir=data_dir, **options)
        want = nifti([folder / "imagesTr" / f"{c}.nii.gz" for c in order],
                     [folder / "labelsTr" / f"{c}.nii.gz" for c in order], num_classes=3, shuffle=training,
                     seed=5, **options)
        for epoch in range(2):  # training draws new patches each epoch, validation the same
            pairs, expected = _pairs(got), _pairs(want)
            assert len(pairs) == len(expected) == len(order) * options.get("samples_per_volume", 1)
            for (x, y), (xe, ye) in zip(pairs, expected):
                np.testing.assert_allclose(x, xe, rtol=1e-6, atol=1e-6)
                np.testing.assert_array_equal(y, ye)


def test_2d_segmentation_patches_crop_image_and_label_together(data_dir):
    import tensorflow_datasets as tfds
    train = zd.load("isbi2012_em", split="train", data_dir=data_dir, manual_dir=dummy("isbi2012_em"),
                    patch_size=(16, 24), shuffle=True, seed=3)
    full = {ex["image"][..., 0].tobytes(): ex for ex in raw("isbi2012_em", "train", data_dir)}
    epochs = [_pairs(train), _pairs(train)]
    for x, y in epochs[0]:
        assert x.shape == (16, 24, 1) and y.shape == (16, 24, 1) and y.dtype == np.int32
        # the crop's pixels sit somewhere in one slice, and the label is that slice's crop
        hits = []
        for ex in full.values():
            img = ex["image"][..., 0].astype(np.float32) / 255
            for i in range(img.shape[0] - 15):
                for j in range(img.shape[1] - 23):
                    if np.array_equal(img[i:i + 16, j:j + 24], x[..., 0]):
                        hits.append(ex["label"][i:i + 16, j:j + 24])
        assert hits and any(np.array_equal(h, y) for h in hits)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(*epochs))  # new crops each epoch
    val = zd.load("isbi2012_em", split="validation", data_dir=data_dir, patch_size=16)
    (x, y), = _pairs(val)
    ex, = tfds.as_numpy(zd.load("isbi2012_em", split="validation", data_dir=data_dir, raw=True))
    np.testing.assert_array_equal(x[..., 0], ex["image"][8:24, 8:24, 0] / np.float32(255))  # the centre


def test_classification_images_are_scaled_and_resized(data_dir):
    ds = zd.load("medmnist/pathmnist_28", split="test", data_dir=data_dir, manual_dir=dummy("medmnist"))
    x, y = next(ds.as_numpy_iterator())
    assert x.shape == (28, 28, 3) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert y.shape == () and 0 <= y < 9
    resized = zd.load("medmnist/pathmnist_28", split="test", data_dir=data_dir, patch_size=32)
    assert next(resized.as_numpy_iterator())[0].shape == (32, 32, 3)
    vol = zd.load("medmnist/organmnist3d_28", split="validation", data_dir=data_dir, manual_dir=dummy("medmnist"))
    assert next(vol.as_numpy_iterator())[0].shape == (28, 28, 28, 1)


def test_default_splits_and_option_errors(data_dir):
    from zoo.datapath import from_source
    kw = dict(task="segmentation", spatial_dims=2, data_dir=data_dir)
    assert len(_pairs(from_source("tfds:isbi2012_em", training=True, **kw))) == 5
    assert len(_pairs(from_source("tfds:isbi2012_em", training=False, **kw))) == 1  # validation
    assert len(_pairs(from_source("tfds:isbi2012_em", training=True, split="train+validation", **kw))) == 6
    with pytest.raises(ZooError, match=r"has no split 'val'; it has \['train', 'validation'\]"):
        from_source("tfds:isbi2012_em", split="val", **kw)
    with pytest.raises(ZooError, match=r"holds 2D images without voxel spacing; the options \['spacing', "
                       r"'window'\] apply to volumes only"):
        from_source("tfds:isbi2012_em", window=(0, 1), spacing=1.0, **kw)
    with pytest.raises(ZooError, match=r"holds 2D images .* but the model is 3D"):
        from_source("tfds:isbi2012_em", task="segmentation", spatial_dims=3, data_dir=data_dir)
    with pytest.raises(ZooError, match=r"manual_dir is for the zoo's catalogue data sets"):
        from_source("tfds:mnist", manual_dir=data_dir, data_dir=data_dir)
    with pytest.raises(ZooError, match=r"load\(raw=True\) gives TFDS's examples as stored"):
        zd.load("isbi2012_em", data_dir=data_dir, raw=True, patch_size=8)
    with pytest.raises(ZooError, match=r"TFDS dataset 'camvid': 'label' has 12 classes but num_classes=11; "
                       r"pass num_classes=12"):
        from_source("tfds:camvid", num_classes=11, manual_dir=dummy("camvid"), **kw)
