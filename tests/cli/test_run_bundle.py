"""`zoo run monai_spleen_ct --weights TAG` (issue 22): fine-tuning starts from the bundle's weights, on the
built-in phantoms (the bundle's preprocessing is kept for files and not stretched over the phantoms, as
the run's notes say) and on a user's folder of NIfTI volumes (nibabel's test volumes, labels by
thresholding), to which the bundle's orientation, spacing and window are applied; `zoo predict` on the
exported file then applies them to a scan and writes its labels on the scan's grid.

No real bundle file is here: a MONAI UNet with the spleen bundle's network_def at 1/4 width and random
weights stands in for it, registered as weights 'bundle_test' of monai_spleen_ct (a user registry)
with the real entry's preprocessing and labels."""
import hashlib
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from _proc import run_zoo

SMALL = ["--epochs", "1", "--compress-epochs", "1", "--steps-per-epoch", "3", "--patch-size", "32", "--quiet"]
PREP = {"orientation": "RAS", "spacing": [1.5, 1.5, 2.0], "window": [-57.0, 164.0]}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """(folder, environment): the stand-in bundle file, its registry and a private ZOO_HOME."""
    from monai.networks.nets import UNet

    from zoo.hub.registry import get_registry, thaw
    root = tmp_path_factory.mktemp("bundle")
    real = get_registry().get("monai_spleen_ct").weights["monai"]
    network_def = {**thaw(real.network_def), "channels": [4, 8, 16, 32, 64]}
    torch.manual_seed(0)
    net = UNet(**{k: v for k, v in network_def.items() if k != "_target_"}).eval()
    torch.save(net.state_dict(), root / "model.pt")
    md5 = hashlib.md5((root / "model.pt").read_bytes()).hexdigest()
    spec = {"url": (root / "model.pt").as_uri(), "hash": f"md5:{md5}", "format": "monai", "num_classes": 2,
            "in_channels": 1, "spatial_dims": 3, "network_def": network_def,
            "config": {"channels": network_def["channels"]}, "preprocessing": thaw(real.preprocessing),
            "labels": list(real.labels), "source": "test stand-in: the spleen network_def at 1/4 width, random"}
    (root / "reg.yaml").write_text(yaml.safe_dump({"weights": {"monai_spleen_ct": {"bundle_test": spec}}}))
    stem = net.state_dict()["model.0.conv.unit0.conv.weight"].numpy()  # (out, in, d, h, w)
    return root, {"ZOO_REGISTRY": str(root / "reg.yaml"), "ZOO_HOME": str(root / "home")}, stem


def _stem_correlation(run_folder, stem):
    """Correlation of the fine-tuned stem kernel with the bundle's: ~1 after a few steps from it, ~0 from a
    random start."""
    import zoo
    model = zoo.load_run(run_folder)
    kernel = model.get_layer("stem_conv").get_weights()[0]  # (d, h, w, in, out)
    return float(np.corrcoef(kernel.ravel(), np.transpose(stem, (2, 3, 4, 1, 0)).ravel())[0, 1])


@pytest.mark.slow  # ~60 s: fine-tune, prune_80, int8 export of a 3D UNet
def test_zoo_run_from_the_bundle_on_the_phantoms(bundle, tmp_path):
    root, env, stem = bundle
    res = run_zoo("run", "monai_spleen_ct", "--weights", "bundle_test", "--verify", "warn", "--json",
                  "--out", "runs/p", *SMALL, cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    notes = " | ".join(report["notes"])
    assert "fine-tuned from weights=bundle_test: 57 layers loaded" in notes
    assert "applies to files" in notes and "used as generated" in notes  # the decision, said
    assert report["recipe"] == "prune_80" and report["quantization"] == "int8"
    assert _stem_correlation(tmp_path / "runs/p/1_finetune", stem) > 0.9
    side = json.loads((tmp_path / "runs/p/3_export/monai_spleen_ct_int8.tflite.json").read_text())
    assert side["preprocessing"] == PREP and side["class_names"] == ["background", "spleen"]
    assert json.loads((tmp_path / "runs/p/run.json").read_text())["weights"] == "bundle_test"


def _scans(root):
    """images/ + labels/: nibabel's anatomical.nii and example4d.nii.gz's two volumes (LAS, 2 mm and
    2 x 2 x 2.2 mm oblique), labelled 1 above 100 (inside the bundle's window)."""
    data = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    ex = nib.load(os.path.join(data, "example4d.nii.gz"))
    volumes = {"anat": nib.load(os.path.join(data, "anatomical.nii"))}
    for k in range(2):
        volumes[f"ex4d_{k}"] = nib.Nifti1Image(np.asarray(ex.dataobj)[..., k].astype(np.float32), ex.affine)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for name, image in volumes.items():
        array = np.asarray(image.dataobj).astype(np.float32)
        nib.save(nib.Nifti1Image(array, image.affine), root / "images" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image((array > 100).astype(np.uint8), image.affine), root / "labels" / f"{name}.nii.gz")
    return volumes


@pytest.mark.slow  # ~45 s: fine-tune, float16 export, predict
def test_zoo_run_from_the_bundle_on_a_folder_of_nifti_volumes(bundle, tmp_path):
    root, env, stem = bundle
    volumes = _scans(tmp_path / "scans")
    res = run_zoo("run", "monai_spleen_ct", "--weights", "bundle_test", "--data", "scans", "--recipe", "none",
                  "--quantization", "float16", "--json", "--out", "runs/f", *SMALL, cwd=tmp_path, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert any("preprocessing (orientation RAS, spacing [1.5, 1.5, 2.0], window [-57.0, 164.0]) was applied to "
               "the data scans" in n for n in report["notes"]), report["notes"]
    state = json.loads((tmp_path / "runs/f/1_finetune/state.json").read_text())
    assert state["config"]["preprocessing"] == PREP
    assert _stem_correlation(tmp_path / "runs/f/1_finetune", stem) > 0.9
    tflite = report["artefacts"]["tflite"]
    res = run_zoo("predict", tflite, "scans/images/ex4d_0.nii.gz", "--out", "seg.nii.gz", cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    seg = nib.load(tmp_path / "seg.nii.gz")
    assert seg.shape == volumes["ex4d_0"].shape  # on the scan's grid (LAS, 2 mm), not the 1.5 mm RAS one
    np.testing.assert_allclose(seg.affine, volumes["ex4d_0"].affine, atol=1e-5)
    assert set(np.unique(np.asarray(seg.dataobj))) <= {0, 1}
