"""zoo.models.medicalnet against a PyTorch re-creation of MedicalNet's network (tests/_medical_ref.py,
written from its repository's facts) and against MONAI's ResNet where the layouts agree (dilated=False);
MedicalNet's .pth layout loaded through zoo.load (a test registry entry: no hash, a hand-fetched copy)."""
import numpy as np
import pytest
import torch
from _medical_ref import MedicalNetRef, inputs, max_diff, randomize, sha256, torch_outputs
from monai.networks.nets import resnet as monai_resnet

import zoo
from zoo.errors import InvalidArgumentError, WeightsError
from zoo.hub.convert import medicalnet as convert_medicalnet
from zoo.hub.registry import get_registry
from zoo.models.medicalnet import medicalnet

SHORTCUT = {10: "B", 18: "A", 34: "A", 50: "B"}


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("depth", [10, 18, 34, 50])
def test_backbone_parameter_counts_equal_medicalnet_and_monai(depth):
    ref = MedicalNetRef(depth, SHORTCUT[depth])
    mon = getattr(monai_resnet, f"resnet{depth}")(spatial_dims=3, n_input_channels=1, conv1_t_stride=2,
                                                  shortcut_type=SHORTCUT[depth], bias_downsample=False,
                                                  feed_forward=False)
    numel = sum(p.numel() for p in ref.parameters())
    assert numel == sum(p.numel() for p in mon.parameters())
    model = medicalnet(depth=depth, num_classes=0)
    stats = sum(b.numel() for k, b in ref.state_dict().items() if k.endswith(("running_mean", "running_var")))
    assert (_trainable(model), model.count_params()) == (numel, numel + stats)
    entry = get_registry().get(f"medicalnet_resnet{depth}")
    assert (entry.trainable_params, entry.params) == (numel, numel + stats)


def _checkpoint(net, path):
    """MedicalNet's file layout: {'state_dict': ...} with nn.DataParallel's 'module.' prefixes."""
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


REGISTRY = """
models:
  test_medicalnet{depth}:
    builder: zoo.models.medicalnet:medicalnet
    config: {{depth: {depth}, width: 8}}
    task: classification
    spatial_dims: [3]
    input: {{channels: 1, size: 32, min_size: 8}}
    weights:
      medicalnet:
        url: https://weights.invalid/medicalnet/resnet_{depth}_23dataset.pth
        manual_download: Fetch it by hand from the publisher.
        format: medicalnet
        num_classes: 0
        in_channels: 1
        spatial_dims: 3
"""


@pytest.fixture
def medicalnet_registry(isolated_home, tmp_path, monkeypatch):
    def use(depth):
        path = tmp_path / f"reg{depth}.yaml"
        path.write_text(REGISTRY.format(depth=depth))
        monkeypatch.setenv("ZOO_REGISTRY", str(path))
        get_registry(reload=True)
        return f"test_medicalnet{depth}"
    yield use
    monkeypatch.delenv("ZOO_REGISTRY")
    get_registry(reload=True)


@pytest.mark.parametrize("depth", [10, 18, 50])
def test_checkpoint_loads_through_zoo_load_and_equals_the_reference(depth, medicalnet_registry, tmp_path, capsys):
    name = medicalnet_registry(depth)
    torch.manual_seed(depth)
    ref = randomize(MedicalNetRef(depth, SHORTCUT[depth], width=8), depth)
    path = _checkpoint(ref, tmp_path / f"resnet_{depth}_23dataset.pth")
    x = inputs((24, 32, 16, 1), seed=depth)
    model = zoo.load(name, weights=str(path))  # the spec's num_classes 0: the backbone
    diff = max_diff(model(x, training=False), torch_outputs(ref, x))
    assert f"sha256 {sha256(path)}" in capsys.readouterr().out  # no registered hash: the file's is printed
    print(f"medicalnet resnet{depth} (shortcut {SHORTCUT[depth]}, width 8): max abs diff {diff:.2e}")
    assert diff <= 1e-4
    report = model.zoo_load_report
    assert report.conversion == "converted now" and report.converted_from == str(path)
    # the segmentation head of the repository on top: the backbone loads, the head starts fresh
    seg = zoo.load(name, weights=str(path), head="segmentation", num_classes=3)
    assert set(seg.zoo_load_report.reinitialised) == {"head_upconv", "head_bn1", "head_conv", "head_bn2", "classifier"}
    assert seg.zoo_load_report.conversion.startswith("cached")
    feats = zoo.contract(seg).stage_outputs[-1]
    from zoo._keras import keras
    got = keras.Model(seg.input, seg.get_layer(feats).output)(x)
    assert max_diff(got, torch_outputs(ref, x)) <= 1e-4


def test_segmentation_head_matches_medicalnet_conv_seg(tmp_path):
    torch.manual_seed(0)
    ref = randomize(MedicalNetRef(18, "A", width=8, seg_classes=3))
    model = medicalnet(depth=18, width=8, head="segmentation", num_classes=3)
    report = convert_medicalnet.load_file(model, _checkpoint(ref, tmp_path / "seg.pth"))
    assert not report["reinitialised"] and not report["skipped"]
    x = inputs((16, 16, 16, 1))
    diff = max_diff(model(x, training=False), torch_outputs(ref, x))
    print(f"medicalnet resnet18 + conv_seg: max abs diff {diff:.2e}")
    assert diff <= 1e-4
    # a classification model skips the file's conv_seg and keeps its own dense head
    cls = medicalnet(depth=18, width=8, num_classes=2)
    report = convert_medicalnet.load_file(cls, tmp_path / "seg.pth")
    assert report["skipped"] == ["conv_seg"] and list(report["reinitialised"]) == ["classifier"]


@pytest.mark.parametrize("depth", [18, 50])
def test_strided_layout_equals_monai_resnet(depth):
    """dilated=False is MONAI's ResNet layout (stem stride 2 here): the same state dict, the same logits."""
    torch.manual_seed(1)
    net = randomize(getattr(monai_resnet, f"resnet{depth}")(
        spatial_dims=3, n_input_channels=1, conv1_t_stride=2, shortcut_type=SHORTCUT[depth], bias_downsample=False,
        widen_factor=0.125, num_classes=5))
    model = medicalnet(depth=depth, width=8, dilated=False, num_classes=5)
    convert_medicalnet.load_state(model, net.state_dict())
    x = inputs((32, 32, 32, 1))
    with torch.no_grad():
        want = net(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))).numpy()
    diff = max_diff(model(x, training=False), want)
    print(f"monai resnet{depth} (dilated=False): max abs diff {diff:.2e}")
    assert diff <= 1e-4


def test_wrong_layout_and_arguments(tmp_path):
    ref = MedicalNetRef(18, "A", width=8)
    path = _checkpoint(ref, tmp_path / "r18.pth")
    with pytest.raises(WeightsError, match=r"no tensor 'layer2\.0\.downsample\.0\.weight' \(for the model's layer "
                                           r"'stage2_block1_downsample_conv'\)"):
        convert_medicalnet.load_file(medicalnet(depth=18, width=8, shortcut="B", num_classes=0), path)
    with pytest.raises(WeightsError, match=r"tensor 'conv1\.weight' has shape \(8, 1, 7, 7, 7\), which does not fit "
                                           r"the model's layer 'stem_conv' \(kernel \(7, 7, 7, 1, 16\)\)"):
        convert_medicalnet.load_file(medicalnet(depth=18, width=16, num_classes=0), path)
    with pytest.raises(WeightsError, match=r"holds 40 tensor\(s\) the model has no place for, e.g. "
                                           r"'layer1\.1\.bn1\.bias'"):
        convert_medicalnet.load_file(medicalnet(depth=10, width=8, shortcut="A", num_classes=0), path)
    with pytest.raises(InvalidArgumentError, match=r"depth=101 is not a MedicalNet depth; allowed: 10, 18, 34, 50"):
        medicalnet(depth=101)


def test_registry_entry_never_downloads_the_unhashed_file(isolated_home):
    with pytest.raises(WeightsError) as err:
        zoo.load("medicalnet_resnet10", weights="medicalnet")
    text = str(err.value)
    assert "knows no hash" in text and "does not download it" in text and "resnet_10_23dataset.pth" in text
    assert "TencentMedicalNet/MedicalNet-Resnet" in text and str(isolated_home) in text
