"""tools/convert_torchvision.py on torch modules laid out like torchvision's (torch is optional)."""
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import convert_torchvision as ct  # noqa: E402

import zoo  # noqa: E402


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride, downsample):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride, downsample):  # stride on the 3x3 conv ("v1.5")
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


class TorchResNet(nn.Module):
    """torchvision.models.ResNet's module names and forward pass, at any width."""

    def __init__(self, block, layers, width=64, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, n in enumerate(layers, start=1):
            planes, stride = width * 2 ** (i - 1), 1 if i == 1 else 2
            blocks = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != planes * block.expansion):
                    down = nn.Sequential(nn.Conv2d(cin, planes * block.expansion, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * block.expansion))
                blocks.append(block(cin, planes, stride if j == 0 else 1, down))
                cin = planes * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def randomized(net, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bias")) or (name.endswith("weight") and t.ndim == 1):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    return net.eval()


@pytest.mark.parametrize("model_name,block,layers,width", [
    ("resnet18", BasicBlock, (2, 2, 2, 2), 16),
    ("resnet50_tv", Bottleneck, (3, 4, 6, 3), 8)])
def test_converted_resnet_gives_torch_outputs(model_name, block, layers, width, tmp_path, isolated_home, capsys):
    net = randomized(TorchResNet(block, layers, width=width, num_classes=10))
    pth = tmp_path / "tv.pth"
    torch.save(net.state_dict(), pth)
    out = tmp_path / f"{model_name}.weights.h5"
    saved = ct.main([str(pth), "--model", model_name, "--out", str(out), "--set", f"width={width}",
                     "--set", "input_shape=[64, 64, 3]"])
    printed = capsys.readouterr().out
    assert f"sha256:{saved.sha256}" in printed and "weights:" in printed
    model = zoo.load(model_name, weights=str(out), width=width, num_classes=10, input_shape=(64, 64, 3))
    report = model.zoo_load_report
    assert not report.adapted and not report.reinitialised and not report.skipped
    assert len(report.loaded) == len({k.rsplit(".", 1)[0] for k in net.state_dict()})
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = model(x).numpy()
    assert np.abs(want - got).max() <= 1e-4, np.abs(want - got).max()


def torch_alexnet(fc_units, num_classes):
    """torchvision.models.AlexNet's module indices and forward pass, with narrow FC layers."""
    net = nn.Module()
    net.features = nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    net.avgpool = nn.AdaptiveAvgPool2d(6)
    net.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(256 * 36, fc_units), nn.ReLU(), nn.Dropout(),
        nn.Linear(fc_units, fc_units), nn.ReLU(), nn.Linear(fc_units, num_classes))
    net.forward = lambda x: net.classifier(torch.flatten(net.avgpool(net.features(x)), 1))
    return randomized(net)


def test_converted_alexnet_gives_torch_outputs_with_chw_to_hwc_flatten(tmp_path, isolated_home):
    net = torch_alexnet(32, 7)
    out = tmp_path / "alexnet.npz"
    ct.convert(net.state_dict(), "alexnet", out, overrides={"fc_units": 32}, verbose=False)
    # 128 px: a 3x3 map pooled adaptively to 6x6, so the flatten order matters
    model = zoo.load("alexnet", weights=str(out), fc_units=32, num_classes=7, input_shape=(128, 128, 3))
    x = np.random.default_rng(0).normal(size=(2, 128, 128, 3)).astype("float32")
    with torch.no_grad():
        want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = model(x).numpy()
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert len(model.zoo_load_report.loaded) == 8


def torch_googlenet_state_dict(width, num_classes):
    """A state dict with torchvision GoogLeNet's keys (BasicConv2d, InceptionAux), narrow."""
    from zoo.models.googlenet import INCEPTION, _width
    gen, sd = torch.Generator().manual_seed(0), {}

    def basic(name, cin, cout, k):
        sd[f"{name}.conv.weight"] = torch.randn(cout, cin, k, k, generator=gen) * 0.1
        for p in ("weight", "bias", "running_mean"):
            sd[f"{name}.bn.{p}"] = torch.randn(cout, generator=gen)
        sd[f"{name}.bn.running_var"] = torch.rand(cout, generator=gen) + 0.5
        sd[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)

    def linear(name, cin, cout):
        sd[f"{name}.weight"], sd[f"{name}.bias"] = torch.randn(cout, cin, generator=gen), torch.randn(cout)

    w = lambda c: _width(c, width)  # noqa: E731
    basic("conv1", 3, w(64), 7), basic("conv2", w(64), w(64), 1), basic("conv3", w(64), w(192), 3)
    cin = w(192)
    for key, (n1, r3, n3, r5, n5, proj) in INCEPTION.items():
        n1, r3, n3, r5, n5, proj = map(w, (n1, r3, n3, r5, n5, proj))
        p = f"inception{key}"
        basic(f"{p}.branch1", cin, n1, 1), basic(f"{p}.branch2.0", cin, r3, 1), basic(f"{p}.branch2.1", r3, n3, 3)
        basic(f"{p}.branch3.0", cin, r5, 1), basic(f"{p}.branch3.1", r5, n5, 3), basic(f"{p}.branch4.1", cin, proj, 1)
        cin = n1 + n3 + n5 + proj
        if key in ("4a", "4d"):
            aux = "aux1" if key == "4a" else "aux2"
            basic(f"{aux}.conv", cin, w(128), 1)
            linear(f"{aux}.fc1", w(128) * 16, w(1024)), linear(f"{aux}.fc2", w(1024), num_classes)
    linear("fc", cin, num_classes)
    return sd


def test_googlenet_state_dict_maps_completely(tmp_path, isolated_home):
    sd = torch_googlenet_state_dict(0.25, 6)
    saved = ct.convert(sd, "googlenet_bn", tmp_path / "g.npz", overrides={"width": 0.25, "aux_heads": True},
                       verbose=False)
    model = zoo.load("googlenet_bn", weights=saved.path, width=0.25, aux_heads=True, num_classes=6,
                     input_shape=(224, 224, 3))
    assert len(model.zoo_load_report.loaded) == len({k.rsplit(".", 1)[0] for k in sd})
    np.testing.assert_array_equal(model.get_layer("aux1_fc").get_weights()[1], sd["aux1.fc1.bias"].numpy())


def test_conversion_rules():
    # OIHW -> HWIO, (out, in) -> (in, out), BN order, CHW -> HWC flatten order
    w = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5).astype("float32")
    np.testing.assert_array_equal(ct.convert_module({"weight": w})[0], w.transpose(2, 3, 1, 0))
    bn = {k: np.full(3, i, "float32") for i, k in enumerate(("weight", "bias", "running_mean", "running_var"))}
    assert [a[0] for a in ct.convert_module(bn)] == [0, 1, 2, 3]
    c, h, wd = 3, 2, 2
    fc = np.random.default_rng(0).normal(size=(4, c * h * wd)).astype("float32")
    feat = np.random.default_rng(1).normal(size=(c, h, wd)).astype("float32")
    kernel, bias = ct.convert_module({"weight": fc, "bias": np.zeros(4, "float32")}, flatten_hw=(h, wd))
    np.testing.assert_allclose(feat.transpose(1, 2, 0).reshape(-1) @ kernel, fc @ feat.reshape(-1), rtol=1e-5)
    names = ct.rename({"layer3.1.downsample.0": {}, "layer2.0.bn2": {}, "fc": {}}, "resnet")
    assert names == {"layer3.1.downsample.0": "stage3_block2_downsample_conv",
                     "layer2.0.bn2": "stage2_block1_bn2", "fc": "classifier"}
    # torchvision vgg19_bn's features: (conv, bn, relu) per conv, a max pool after each block
    modules, idx, convs = {}, 0, []
    for n in (2, 2, 4, 4, 4):
        for _ in range(n):
            modules[f"features.{idx}"], modules[f"features.{idx + 1}"] = {}, {"running_mean": 0}
            convs.append(f"features.{idx}")
            idx += 3
        idx += 1
    vgg = ct.rename({**modules, "classifier.0": {}, "classifier.3": {}, "classifier.6": {}}, "vgg")
    assert vgg["features.0"] == "block1_conv1" and vgg["features.1"] == "block1_conv1_bn"
    assert vgg[convs[4]] == "block3_conv1" and vgg[convs[-1]] == "block5_conv4" == vgg["features.49"]
    assert [vgg[f"classifier.{i}"] for i in (0, 3, 6)] == ["fc1", "fc2", "predictions"]


def test_unmapped_module_and_wrong_architecture_are_errors(tmp_path, isolated_home):
    sd = randomized(TorchResNet(BasicBlock, (2, 2, 2, 2), width=8, num_classes=4)).state_dict()
    with pytest.raises(SystemExit, match="'aux.conv' has no mapping"):
        ct.convert({**sd, "aux.conv.weight": torch.zeros(1, 1, 1, 1)}, "resnet18", tmp_path / "x.npz",
                   overrides={"width": 8}, verbose=False)
    sd34 = TorchResNet(BasicBlock, (3, 4, 6, 3), width=8, num_classes=4).state_dict()
    with pytest.raises(zoo.WeightsError, match="stage1_block3_conv1"):
        ct.convert(sd34, "resnet18", tmp_path / "y.npz", overrides={"width": 8}, verbose=False)
    assert not (tmp_path / "y.npz").exists()
