"""MONAI bundle weights through zoo.load: each listed bundle's network_def as the real MONAI module with
random weights, its state_dict served by the loopback server with its md5 from a test registry, loaded
with weights=TAG and compared with MONAI's eval() output; conversion cached once; missing torch, a
wrong file, offline use, the registry's provenance and zoo info."""
import io
import sys
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
import yaml
from _medical_ref import inputs, max_diff, md5, randomize, torch_outputs
from monai.networks.nets import SegResNet, UNet

import zoo
from zoo.errors import MissingDependencyError, RegistryError, WeightsError
from zoo.hub import convert
from zoo.hub.convert import monai as convert_monai
from zoo.hub.registry import get_registry, load_registry

MONAI = {"UNet": UNet, "SegResNet": SegResNet}


def _bundle_def(entry, tag="monai"):
    return {k: v for k, v in get_registry().get(entry).weights[tag].network_def.items()}


def _thaw(value):
    if isinstance(value, (tuple, list)):
        return [_thaw(v) for v in value]
    if hasattr(value, "items"):
        return {k: _thaw(v) for k, v in value.items()}
    return value


# entry -> (changes to the bundle's network_def for the test, input shape): full width where a case runs
# in a few seconds, else the same network_def at reduced width
BUNDLES = {
    "monai_spleen_ct": ({}, (32, 32, 32, 1)),
    "monai_prostate_mri": ({"channels": [4, 8, 16, 32, 64, 128]}, (32, 32, 32, 1)),
    "monai_brats": ({}, (16, 16, 16, 4)),
    "monai_wholebody_ct": ({"init_filters": 8}, (16, 16, 16, 1)),
}


def _registry_text(name, entry_name, network_def, url, hash_):
    """A user registry: a test entry with the bundle's builder and (possibly narrowed) network_def."""
    builder, kwargs = convert_monai.builder_kwargs(network_def)
    spec = {"url": url, "hash": f"md5:{hash_}", "format": "monai", "num_classes": kwargs["num_classes"],
            "in_channels": kwargs["in_channels"], "spatial_dims": kwargs["spatial_dims"] if "spatial_dims" in kwargs
            else 3, "network_def": network_def, "source": f"test copy of {entry_name}'s network_def"}
    config = {k: v for k, v in kwargs.items() if k not in ("in_channels", "spatial_dims")}
    entry = {"builder": builder, "config": config, "task": "segmentation", "spatial_dims": [3, 2],
             "weights": {"loopback": spec}}
    return yaml.safe_dump({"models": {name: entry}}, sort_keys=False)


def _serve(server, tmp_path, monkeypatch, entry_name, changes, seed=0):
    network_def = {**_thaw(_bundle_def(entry_name)), **changes}
    torch.manual_seed(seed)
    net = randomize(MONAI[network_def["_target_"]](**{k: v for k, v in network_def.items() if k != "_target_"}), seed)
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    url = server.add(f"{entry_name}/model.pt", path.read_bytes())
    name = f"test_{entry_name}"
    (tmp_path / "reg.yaml").write_text(_registry_text(name, entry_name, network_def, url, md5(path)))
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "reg.yaml"))
    get_registry(reload=True)
    return name, net, url, network_def


@pytest.fixture
def bundle_env(http_env, server, tmp_path, monkeypatch):
    yield lambda entry, changes, seed=0: _serve(server, tmp_path, monkeypatch, entry, changes, seed)
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    get_registry(reload=True)


@pytest.mark.parametrize("entry", list(BUNDLES))
def test_bundle_weights_load_and_equal_monai(entry, bundle_env, server, monkeypatch):
    changes, shape = BUNDLES[entry]
    name, net, url, network_def = bundle_env(entry, changes)
    x = inputs(shape)
    want = torch_outputs(net, x)
    model = zoo.load(name, weights="loopback")
    diff = max_diff(model(x, training=False), want)
    print(f"{entry} {'(narrowed: ' + str(changes) + ')' if changes else '(full width)'} 3D: max abs diff {diff:.2e}")
    assert diff <= 1e-4
    report = model.zoo_load_report
    assert report.conversion == "converted now" and report.hash == f"md5:{md5(report.converted_from)}"
    assert not report.reinitialised and not report.adapted
    # the second load neither downloads nor converts: the converted file is cached by the source's md5
    monkeypatch.setattr(convert, "convert", lambda *a, **k: pytest.fail("converted twice"))
    again = zoo.load(name, weights="loopback")
    assert again.zoo_load_report.conversion.startswith("cached") and server.count(f"{entry}/model.pt") == 1
    np.testing.assert_array_equal(again(x), model(x))
    # the same weights in 2D where the entry's network is dimension-generic: the file is 3D, so refused
    with pytest.raises(WeightsError, match=r"are 3D but the model is 2D"):
        zoo.load(name, weights="loopback", spatial_dims=2)


@pytest.mark.parametrize("entry,shape", [("monai_spleen_ct", (32, 32, 1)), ("monai_brats", (32, 32, 4))])
def test_bundle_layouts_in_2d_equal_monai(entry, shape, tmp_path):
    """The bundles' network_def with spatial_dims=2 (MONAI builds them in 2D too), via zoo.from_monai and a
    model.pt path."""
    network_def = {**_thaw(_bundle_def(entry)), "spatial_dims": 2}
    if entry == "monai_spleen_ct":
        network_def["channels"] = [8, 16, 32, 64, 128]
    torch.manual_seed(3)
    net = randomize(MONAI[network_def["_target_"]](**{k: v for k, v in network_def.items() if k != "_target_"}), 3)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    x = inputs(shape, seed=3)
    diff = max_diff(zoo.from_monai(network_def, tmp_path / "model.pt")(x, training=False), torch_outputs(net, x))
    print(f"{entry} 2D: max abs diff {diff:.2e}")
    assert diff <= 1e-4
    torch.save({"model": net.state_dict(), "epoch": 7}, tmp_path / "checkpoint.pt")  # a training checkpoint
    again = zoo.from_monai(network_def, tmp_path / "checkpoint.pt")(x, training=False)
    assert max_diff(again, torch_outputs(net, x)) <= 1e-4


def test_registry_network_defs_match_the_entries():
    """Each bundle entry's config is its recorded network_def, as zoo.from_monai translates it."""
    reg = get_registry()
    for name in ("monai_spleen_ct", "monai_prostate_mri", "monai_brats", "monai_wholebody_ct"):
        entry = reg.get(name)
        for tag, spec in entry.weights.items():
            builder, kwargs = convert_monai.builder_kwargs(_thaw(spec.network_def))
            assert builder == entry.builder, (name, tag)
            assert {k: v for k, v in kwargs.items() if k not in ("in_channels", "spatial_dims")} == \
                _thaw(entry.config), (name, tag)
            assert (kwargs["in_channels"], kwargs.get("spatial_dims", 3)) == (spec.in_channels, spec.spatial_dims)
            assert entry.input["channels"] == spec.in_channels and spec.format == "monai"
            assert spec.license.startswith("Apache-2.0") and spec.commercial_use is True and spec.upstream_version


def test_missing_torch_is_a_clear_error(bundle_env, monkeypatch, tmp_path):
    name, net, _, network_def = bundle_env("monai_brats", {"init_filters": 8})
    monkeypatch.setitem(sys.modules, "torch", None)  # as if the torch extra were not installed
    with pytest.raises(MissingDependencyError, match=r'needs the package \'torch\'.*pip install "medzoo\[torch\]"'):
        zoo.load(name, weights="loopback")
    with pytest.raises(MissingDependencyError, match=r'pip install "medzoo\[torch\]"'):
        zoo.from_monai(network_def, tmp_path / "model.pt")


def test_wrong_layout_names_the_tensor(bundle_env, tmp_path):
    name, _, _, network_def = bundle_env("monai_spleen_ct", {"channels": [4, 8, 16, 32, 64]})
    other = UNet(**{**{k: v for k, v in network_def.items() if k != "_target_"}, "channels": [4, 8, 16, 32, 48]})
    with pytest.raises(WeightsError, match=r"tensor 'model\.1\.submodule\.1\.submodule\.1\.submodule\.1\.submodule\."
                                           r"conv\.unit0\.conv\.weight' has shape \(48, 32, 3, 3, 3\), which does not "
                                           r"fit the model's layer 'stage5_unit0_conv' \(kernel \(3, 3, 3, 32, 64\)\)"):
        zoo.from_monai(network_def, other.state_dict())
    seg = SegResNet(init_filters=8, in_channels=1, out_channels=2)
    with pytest.raises(WeightsError, match=r"has no tensor 'model\.0\.conv\.unit0\.conv\.weight' \(for the model's "
                                           r"layer 'stem_conv'\)"):
        zoo.from_monai(network_def, seg.state_dict())
    extra = dict(UNet(**{k: v for k, v in network_def.items() if k != "_target_"}).state_dict())
    extra["model.3.weight"] = torch.zeros(2)
    with pytest.raises(WeightsError,
                       match=r"holds 1 tensor\(s\) the model has no place for, e\.g\. 'model\.3\.weight'"):
        zoo.from_monai(network_def, extra)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(WeightsError, match=r"cannot read .*junk\.pt as a PyTorch weights file with weights_only=True"):
        zoo.from_monai(network_def, tmp_path / "junk.pt")


def test_offline_uses_the_cache_and_names_the_path(bundle_env, monkeypatch, server):
    name, *_ = bundle_env("monai_brats", {"init_filters": 8})
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"ZOO_OFFLINE=1 and model\.pt is not in the cache"):
        zoo.load(name, weights="loopback")
    assert server.count("monai_brats/model.pt") == 0
    monkeypatch.delenv("ZOO_OFFLINE")
    zoo.load(name, weights="loopback")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert zoo.load(name, weights="loopback").zoo_load_report.conversion.startswith("cached")


def test_a_hand_fetched_copy_of_a_hashed_file_is_verified(bundle_env, tmp_path):
    name, net, _, _ = bundle_env("monai_brats", {"init_filters": 8})
    copy = tmp_path / "copy" / "model.pt"  # the URL's file name: taken as the registered file
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "model.pt").read_bytes())
    assert zoo.load(name, weights=str(copy)).zoo_load_report.converted_from == str(copy)
    torch.save(net.state_dict() | {"convInit.conv.weight": net.state_dict()["convInit.conv.weight"] * 2}, copy)
    with pytest.raises(WeightsError, match=r"hash mismatch for .*model\.pt: md5 .* The file is not the registered one"):
        zoo.load(name, weights=str(copy))
    other = tmp_path / "renamed.pt"
    other.write_bytes((tmp_path / "model.pt").read_bytes())
    with pytest.raises(WeightsError, match=r"is a PyTorch file, which the zoo converts only as a registered file .*"
                                           r"'loopback': model\.pt"):
        zoo.load(name, weights=str(other))


def test_manual_download_refuses_and_a_local_copy_loads(isolated_home, tmp_path, capsys):
    with pytest.raises(WeightsError) as err:
        zoo.load("monai_prostate_mri", weights="monai")
    text = str(err.value)
    assert "knows no hash for https://zenodo.org/record/7040585/files/anatomy.pt" in text
    assert "zenodo.org/record/7040585" in text and "weights='/path/to/anatomy.pt'" in text
    assert str(isolated_home / "weights") in text  # where a copy may be put instead
    network_def = _thaw(_bundle_def("monai_prostate_mri"))
    torch.manual_seed(0)
    net = UNet(**{k: v for k, v in network_def.items() if k != "_target_"})
    torch.save(net.state_dict(), tmp_path / "anatomy.pt")
    model = zoo.load("monai_prostate_mri", weights=str(tmp_path / "anatomy.pt"), input_shape=(32, 32, 32, 1))
    assert "sha256 " in capsys.readouterr().out
    report = model.zoo_load_report
    assert report.hash.startswith("sha256:") and report.conversion == "converted now"
    x = inputs((32, 32, 32, 1), batch=1)
    assert max_diff(model(x, training=False), torch_outputs(net.eval(), x)) <= 1e-4


def test_zoo_info_shows_the_provenance():
    from zoo.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["info", "monai_spleen_ct"]) == 0
    text = out.getvalue()
    for fact in ("md5:be4fa95e236df91766147c112ee6fafd", "model_spleen_ct_segmentation_v1.pt", "format:", "monai",
                 "license:", "Apache-2.0", "commercial_use:", "yes", "upstream_version:", "0.5.9",
                 "upstream_metric:", "mean_dice=0.961", "reported by the publisher, not measured by the zoo",
                 "orientation=RAS", "spacing=[1.5, 1.5, 2.0]", "intensity_window=[-57, 164]", "roi_size=[96, 96, 96]",
                 "network_def:", "_target_=UNet"):
        assert fact in text, fact
    out = io.StringIO()
    with redirect_stdout(out):
        main(["info", "unet3d_genesis"])
    assert "manual_download:" in out.getvalue() and "no (non-commercial terms" in out.getvalue()


@pytest.mark.parametrize("field,value,message", [
    ("commercial_use", "yes", r"commercial_use \(whether the licences allow commercial use .*\) is the string "
                              r"'yes'; expected one of True, False"),
    ("format", "pytorch", r"format \(the file format: .*\) is the string 'pytorch'; expected one of 'keras', 'h5', "
                          r".*'monai', 'medicalnet', 'genesis'"),
    ("preprocessing", {"orientation": "XYZ"}, r"preprocessing\.orientation is the string 'XYZ'; expected three axis "
                                              r"codes such as 'RAS'"),
    ("preprocessing", {"spacing": [1.5, -2]}, r"preprocessing\.spacing\[1\] is -2; expected a finite number > 0"),
    ("upstream_metric", 0.9, r"upstream_metric \(.*\) is 0\.9; expected a mapping of metric names to values"),
    ("hash", None, r"missing required key 'hash' .* needs 'manual_download' instead"),
    ("manual_download", "by hand", r"has both 'hash' and 'manual_download'"),
])
def test_weight_spec_fields_are_checked(field, value, message, tmp_path):
    spec = {"url": "https://x.invalid/w.pt", "hash": "md5:" + "0" * 32, "format": "monai"}
    if value is None:
        del spec[field]
    else:
        spec[field] = value
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"models": {"w": {
        "builder": "zoo.models.segresnet:segresnet", "task": "segmentation", "spatial_dims": [3],
        "weights": {"t": spec}}}}))
    with pytest.raises(RegistryError, match=message):
        load_registry([get_registry().files[0], tmp_path / "r.yaml"])


@pytest.mark.parametrize("network_def,shape", [
    ({"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": [4, 8, 16],
      "strides": [2, 2], "num_res_units": 2, "norm": "batch"}, (16, 16, 16, 1)),
    ({"_target_": "SegResNet", "init_filters": 8, "in_channels": 4, "out_channels": 3, "blocks_down": [1, 1, 1],
      "blocks_up": [1, 1]}, (16, 16, 16, 4)),
])
def test_to_state_dict_is_the_inverse_and_carries_keras_changes_back_to_monai(network_def, shape):
    """A zoo model (changed in Keras, as a fine-tune changes it) back to the MONAI module: the state dict has
    MONAI's keys and layouts (load_state_dict(strict=True) takes it) and the module then computes what the
    Keras model computes."""
    cls = MONAI[network_def["_target_"]]
    net = randomize(cls(**{k: v for k, v in network_def.items() if k != "_target_"}), 5)
    state = net.state_dict()
    model = zoo.from_monai(network_def, state)
    back = convert_monai.to_state_dict(model, network_def)
    assert set(back) == set(state)
    assert max(float(np.abs(back[k] - state[k].numpy()).max()) for k in state) == 0.0
    rng = np.random.default_rng(1)
    for w in model.weights:  # as a fine-tune would: every variable moves
        w.assign(w.numpy() * (1 + 0.1 * rng.standard_normal(w.shape)).astype("float32"))
    fresh = cls(**{k: v for k, v in network_def.items() if k != "_target_"}).eval()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in convert_monai.to_state_dict(model, network_def).items()},
                          strict=True)
    x = inputs(shape, seed=2)
    diff = max_diff(model(x, training=False), torch_outputs(fresh, x))
    print(f"{network_def['_target_']}: Keras after changes vs MONAI with to_state_dict: max abs diff {diff:.1e}")
    assert diff <= 1e-4
