"""A bundle's preprocessing, registered as data in its weight spec, becomes the loaded model's record
(zoo.record.info_of(model).preprocessing and .patch_size), and zoo.predict applies it: the image the
network sees is MONAI's transforms' output (the spleen bundle's Orientationd, Spacingd,
ScaleIntensityRanged) on the same file, and the labels come back on the file's grid."""
import os
import warnings

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

import zoo
import zoo.inference
from zoo.hub.api import applied_preprocessing
from zoo.hub.registry import get_registry, thaw
from zoo.record import info_of

SPLEEN = {"orientation": "RAS", "spacing": (1.5, 1.5, 2.0), "window": (-57.0, 164.0)}


def test_the_registry_specs_map_to_the_steps_the_zoo_applies():
    reg = get_registry()
    assert applied_preprocessing(reg.get("monai_spleen_ct").weights["monai"]) == (SPLEEN, (96, 96, 96))
    prostate, roi = applied_preprocessing(reg.get("monai_prostate_mri").weights["monai"])
    assert prostate == {"orientation": "RAS", "spacing": (0.5, 0.5, 0.5), "normalize": "zscore"} and roi == (96,) * 3
    assert applied_preprocessing(reg.get("unet3d_genesis").weights["genesis_chest_ct"]) == (
        {"window": (-1000.0, 1000.0)}, None)
    # descriptions the zoo has no step for (MONAI's non-zero z-score) are not applied
    assert applied_preprocessing(reg.get("monai_brats").weights["monai"]) == ({}, (240, 240, 160))
    assert applied_preprocessing(None) == ({}, None)


@pytest.fixture
def spleen_copy(isolated_home, tmp_path, monkeypatch):
    """The spleen entry's weight spec (its preprocessing included) for a narrowed MONAI UNet with random
    weights, written as a file:// test registry entry."""
    from monai.networks.nets import UNet
    real = get_registry().get("monai_spleen_ct").weights["monai"]
    spec = {k: thaw(getattr(real, k)) for k in ("format", "num_classes", "in_channels", "spatial_dims",
                                                 "preprocessing", "labels", "network_def")}
    network_def = {**spec["network_def"], "channels": [4, 8, 16, 32, 64]}
    torch.manual_seed(0)
    net = UNet(**{k: v for k, v in network_def.items() if k != "_target_"}).eval()
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    import hashlib
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    weights = {k: v for k, v in spec.items() if k != "network_def"}
    weights.update(url=path.as_uri(), hash=f"md5:{md5}", network_def=network_def, source="test copy of the spleen spec")
    entry = {"builder": "zoo.models.monai_unet:monai_unet", "task": "segmentation", "spatial_dims": [3, 2],
             "config": {"channels": network_def["channels"], "strides": [2, 2, 2, 2], "num_res_units": 2,
                        "norm": "batch", "num_classes": 2}, "weights": {"bundle": weights}}
    (tmp_path / "reg.yaml").write_text(yaml.safe_dump({"models": {"test_spleen": entry}}, sort_keys=False))
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "reg.yaml"))
    get_registry(reload=True)
    yield "test_spleen"
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    get_registry(reload=True)


def test_the_loaded_model_records_the_bundles_preprocessing_and_predict_applies_it(spleen_copy, tmp_path,
                                                                                     monkeypatch):
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ScaleIntensityRanged,
        Spacingd,
    )
    model = zoo.load(spleen_copy, weights="bundle")
    info = info_of(model)
    assert info.preprocessing == SPLEEN and info.patch_size == (96, 96, 96)
    assert zoo.load(spleen_copy).zoo_info.preprocessing == {}  # random weights: no bundle preprocessing
    # the image zoo.predict hands to the sliding window is MONAI's preprocessing of the file
    im = nib.load(os.path.join(os.path.dirname(nib.__file__), "tests", "data", "example4d.nii.gz"))
    src = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(im.dataobj)[..., 0].astype(np.float32), im.affine, im.header), src)
    seen = {}
    infer = zoo.inference._infer

    def spy(net, image, **kw):
        seen["image"], seen["patch"] = image, kw["patch_size"]
        return infer(net, image, **kw)

    monkeypatch.setattr(zoo.inference, "_infer", spy)
    labels = zoo.predict(model, src, out=tmp_path / "seg.nii.gz", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = Compose([LoadImaged(keys="image"), EnsureChannelFirstd(keys="image"),
                        Orientationd(keys="image", axcodes="RAS"),
                        Spacingd(keys="image", pixdim=(1.5, 1.5, 2.0), mode="bilinear"),
                        ScaleIntensityRanged(keys="image", a_min=-57, a_max=164, b_min=0.0, b_max=1.0, clip=True),
                        ])({"image": str(src)})["image"]
    want = np.moveaxis(np.asarray(want), 0, -1)
    assert seen["patch"] == (96, 96, 96) and seen["image"].shape == want.shape
    np.testing.assert_allclose(seen["image"], want, atol=1e-5)
    # the labels are on the file's grid (LAS, 2 mm), written with its affine
    written = nib.load(tmp_path / "seg.nii.gz")
    assert labels.shape == im.shape[:3] and written.shape == im.shape[:3]
    np.testing.assert_allclose(written.affine, im.affine, atol=1e-5)
