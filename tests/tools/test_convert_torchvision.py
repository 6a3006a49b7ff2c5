"""tools/convert_torchvision.py on real torchvision modules (torchvision.models, random init: AlexNet, VGG-11
with and without BN, ResNet-18 and -50, GoogLeNet, DeepLabV3-ResNet50) and, where a narrow net keeps the
quick tier quick or tests what torchvision cannot build (a narrow DeepLab head, wrong architectures), on
torch modules laid out like torchvision's (torch and torchvision are in the test extras)."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch  # the test extra installs torch and torchvision: a missing one fails, never skips
from _proc import ROOT, run_python

nn = torch.nn

sys.path.insert(0, str(ROOT / "tools"))
import _torch_ref  # noqa: E402
import convert_torchvision as ct  # noqa: E402
from _torch_ref import assert_matches, randomized, reference_outputs  # noqa: E402

import zoo  # noqa: E402


class Block(nn.Module):
    """torchvision's BasicBlock (two 3x3 convs) or Bottleneck (1x1, 3x3, 1x1; the stride on the 3x3
    conv as torchvision's "v1.5"; padding = dilation); each conv{i} is followed by bn{i}."""

    def __init__(self, cin, planes, stride, downsample, dilation, bottleneck):
        super().__init__()
        if bottleneck:
            convs = [(cin, planes, 1, 1, 0, 1), (planes, planes, 3, stride, dilation, dilation),
                     (planes, planes * 4, 1, 1, 0, 1)]
        else:
            assert dilation == 1  # torchvision refuses dilated basic blocks
            convs = [(cin, planes, 3, stride, 1, 1), (planes, planes, 3, 1, 1, 1)]
        for i, (ci, co, k, st, pad, dil) in enumerate(convs, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(ci, co, k, st, pad, dil, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm2d(co))
        self.n, self.downsample = len(convs), downsample

    def forward(self, x):
        out = x
        for i in range(1, self.n + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            out = torch.relu(out) if i < self.n else out
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchResNet(nn.Module):
    """torchvision.models.ResNet's module names and forward pass, at any width. ``dilate`` =
    replace_stride_with_dilation; ``num_classes=0``: no avgpool/fc (a segmentation backbone)."""

    def __init__(self, bottleneck, layers, width=64, num_classes=1000, dilate=(False, False, False)):
        super().__init__()
        expansion = 4 if bottleneck else 1
        self.conv1, self.bn1 = nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, dilation = width, 1
        for i, n in enumerate(layers, start=1):
            planes, stride, previous = width * 2 ** (i - 1), 1 if i == 1 else 2, dilation
            if i > 1 and dilate[i - 2]:
                dilation, stride = dilation * stride, 1
            blocks = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or cin != planes * expansion):
                    down = nn.Sequential(nn.Conv2d(cin, planes * expansion, 1, stride, bias=False),
                                         nn.BatchNorm2d(planes * expansion))
                blocks.append(Block(cin, planes, stride if j == 0 else 1, down, previous if j == 0 else dilation,
                                    bottleneck))
                cin = planes * expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.out_channels = cin
        if num_classes:
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(cin, num_classes)

    def stages(self, x):
        x, out = self.maxpool(torch.relu(self.bn1(self.conv1(x)))), []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            out.append(x)
        return out

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.stages(x)[-1]), 1))


def assert_torch_outputs(got, net, x, atol=1e-4):
    """``got`` (the Keras model's output or list of outputs on NHWC ``x``) equals ``net``'s
    (see :func:`_torch_ref.assert_matches`)."""
    assert_matches(got, *reference_outputs(net, x), atol=atol)


def test_converted_narrow_resnet18_gives_torch_outputs(tmp_path, isolated_home, capsys):
    # the quick tier's conversion test (the real full-width ResNets are in the slow tier)
    model_name, width = "resnet18", 16
    x = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    net = randomized(TorchResNet(False, (2, 2, 2, 2), width=width, num_classes=10), calibrate=x)
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
    assert_torch_outputs(model(x), net, x)


def _cbr(cin, cout, k, dilation=1):
    """torchvision's conv (no bias, padding = dilation * (k // 2)) + BN + ReLU, as Sequential items."""
    return [nn.Conv2d(cin, cout, k, padding=dilation * (k // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU()]


def _resize(y, size):
    return nn.functional.interpolate(y, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, cin, rates, filters):
        super().__init__()
        self.convs = nn.ModuleList([nn.Sequential(*_cbr(cin, filters, 1))]
                                   + [nn.Sequential(*_cbr(cin, filters, 3, r)) for r in rates]
                                   + [nn.Sequential(nn.AdaptiveAvgPool2d(1), *_cbr(cin, filters, 1))])  # ASPPPooling
        self.project = nn.Sequential(*_cbr(filters * (len(rates) + 2), filters, 1), nn.Dropout(0.5))

    def forward(self, x):
        pooled = _resize(self.convs[-1](x), x.shape[-2:])
        return self.project(torch.cat([branch(x) for branch in self.convs[:-1]] + [pooled], 1))


class TorchDeepLabV3(nn.Module):
    """torchvision deeplabv3_resnet50's module names and forward pass (narrow): a ResNet-50 with
    replace_stride_with_dilation=[False, True, True], DeepLabHead (ASPP 12/24/36 + 3x3 conv +
    classifier) on layer4, FCNHead on layer3 when ``aux``; outputs resized to the input."""

    def __init__(self, width, filters, num_classes, aux=True):
        super().__init__()
        self.backbone = TorchResNet(True, (3, 4, 6, 3), width, num_classes=0, dilate=(False, True, True))
        cin = self.backbone.out_channels
        self.classifier = nn.Sequential(ASPP(cin, (12, 24, 36), filters), *_cbr(filters, filters, 3),
                                        nn.Conv2d(filters, num_classes, 1))
        if aux:
            self.aux_classifier = nn.Sequential(*_cbr(cin // 2, cin // 8, 3), nn.Dropout(0.1),
                                                nn.Conv2d(cin // 8, num_classes, 1))

    def forward(self, x):
        stages = self.backbone.stages(x)
        out = {"out": _resize(self.classifier(stages[3]), x.shape[-2:])}
        if hasattr(self, "aux_classifier"):
            out["aux"] = _resize(self.aux_classifier(stages[2]), x.shape[-2:])
        return out


@pytest.mark.slow  # 2 cases, up to 8.8 s in the quick tier
@pytest.mark.parametrize("aux", [True, False])
def test_converted_deeplabv3_gives_torch_outputs(aux, tmp_path, isolated_home):
    # 108x116: odd sizes after the stem pool (27x29), a 14x15 feature map so the rate-12 branch
    # sees more than its centre tap, and a non-trivial bilinear upsampling (x7.7) to the input
    x = np.random.default_rng(0).normal(size=(2, 108, 116, 3)).astype("float32")
    net = randomized(TorchDeepLabV3(width=8, filters=16, num_classes=5, aux=aux), seed=1, calibrate=x)
    sd = net.state_dict()
    assert ("aux_classifier.4.weight" in sd) == aux and "classifier.0.convs.4.2.running_var" in sd
    out = tmp_path / "dl.weights.h5"
    # no --set aux_head: the converter reads it off the state dict (the registry entry has aux_head=true)
    saved = ct.convert(sd, "deeplabv3_resnet50", out, overrides={"width": 8, "filters": 16}, verbose=False)
    assert ("aux_head: false" in saved.snippet) == (not aux)
    model = zoo.load("deeplabv3_resnet50", weights=str(out), width=8, filters=16, num_classes=5, aux_head=aux)
    assert len(model.zoo_load_report.loaded) == len({k.rsplit(".", 1)[0] for k in sd if "num_batches" not in k})
    assert [o.shape for o in model.outputs] == [(None, None, None, 5)] * (2 if aux else 1)
    # ~60 layers deep, torch's own float32 result is ~4e-4 off its float64 one on these outputs
    # (std ~0.8, max ~4; measured), so a 1e-4 bound would test rounding luck: the float64
    # comparison in assert_torch_outputs (Keras no further off than torch float32) is the strict one
    assert_torch_outputs(model(x), net, x, atol=1e-3)


def torchvision_reference(tmp_path, model, x, seed, **kwargs):
    """REAL ``torchvision.models.<model>(**kwargs)``, randomised, in a subprocess (tests/_torch_ref.py
    says why): ``(its state dict read back with the converter's loader, float32 outputs, float64 outputs)``."""
    out = tmp_path / f"ref_{model}"
    out.mkdir()
    np.save(out / "x.npy", x)
    run = run_python(Path(_torch_ref.__file__), model, json.dumps(kwargs), out / "x.npy", seed, out, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    with np.load(out / "outputs.npz") as ref:
        n = len(ref.files) // 2
        want32, want64 = [ref[f"f32_{i}"] for i in range(n)], [ref[f"f64_{i}"] for i in range(n)]
    return ct.load_state_dict(out / "state.pth"), want32, want64


@pytest.mark.slow  # 2 cases, up to 35.1 s in the quick tier
@pytest.mark.parametrize("aux,transform_input", [(True, True), (False, False)])
def test_converted_real_torchvision_googlenet(aux, transform_input, tmp_path, isolated_home, capsys):
    # 96 px: even sizes down to 6x6 at 4a (ceil-mode and 'same' pooling agree), where the aux
    # heads' adaptive 4x4 pool has overlapping bins, and a 3x3 map after the 2x2/2 maxpool4.
    # The input is ImageNet-normalised, as torchvision's transforms give it.
    x = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype("float32")
    sd, want32, want64 = torchvision_reference(tmp_path, "googlenet", x, 2, aux_logits=aux,
                                               transform_input=transform_input, init_weights=True, num_classes=6)
    # torchvision's pretrained checkpoint holds aux1/aux2 and is used with transform_input=True:
    # the converter sets aux_heads from the state dict and transform_input=True by default
    overrides = {} if transform_input else {"transform_input": False}
    saved = ct.convert(sd, "googlenet_bn", tmp_path / "g.npz", overrides=overrides)
    assert ("aux_heads: true" in saved.snippet) == aux
    assert ("transform_input=True (recorded in the file)" in capsys.readouterr().out) == transform_input
    # nothing but the file: num_classes, aux_heads and transform_input come from its embedded config
    model = zoo.load("googlenet_bn", weights=saved.path, input_shape=(96, 96, 3))
    assert ("transform_input" in [layer.name for layer in model.layers]) == transform_input
    assert len(model.outputs) == (3 if aux else 1)
    assert model.zoo_load_report.file_config == {"num_classes": 6, **({"aux_heads": True} if aux else {}),
                                                 **({"transform_input": True} if transform_input else {})}
    assert not model.zoo_load_report.skipped and not model.zoo_load_report.reinitialised
    assert len(model.zoo_load_report.loaded) == len({k.rsplit(".", 1)[0] for k in sd if "num_batches" not in k})
    assert_matches(model(x), want32, want64)
    if transform_input:  # without the transform the outputs are unrelated (the defect this fixes)
        plain = zoo.load("googlenet_bn", weights=saved.path, input_shape=(96, 96, 3), transform_input=False)
        assert np.abs(np.asarray(plain(x)[0]) - want32[0]).max() > 0.5
        assert plain.zoo_load_report.config_differs == {"transform_input": (True, False)}
        assert "saved with transform_input=True; the model was built with transform_input=False" in str(
            plain.zoo_load_report)


@pytest.mark.slow  # 2 cases, up to 25.4 s in the quick tier
@pytest.mark.parametrize("model,name,fmt,atol", [("resnet18", "resnet18", "safetensors", 1e-4),
                                                  ("segmentation.deeplabv3_resnet50", "deeplabv3_resnet50",
                                                   "weights.h5", 1e-3)])
def test_real_torchvision_full_width(model, name, fmt, atol, tmp_path, isolated_home):
    """Full-width REAL torchvision modules (random init) convert to outputs within float32 rounding;
    the class count comes from the converted file's embedded config."""
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    kwargs = {"num_classes": 7} if name == "resnet18" else {"num_classes": 4, "aux_loss": True,
                                                            "weights_backbone": None}
    sd, want32, want64 = torchvision_reference(tmp_path, model, x, 3, **kwargs)
    saved = ct.convert(sd, name, tmp_path / f"w.{fmt}", verbose=False)
    net = zoo.load(name, weights=saved.path)
    assert net.zoo_load_report.file_config["num_classes"] == kwargs["num_classes"]
    assert_matches(net(x), want32, want64, atol=atol)


@pytest.mark.slow  # measured 14.5 s (torch's import and 61 M parameters converted in a child process)
def test_converted_real_torchvision_alexnet(tmp_path, isolated_home):
    # full width (torchvision's AlexNet takes no width option); 128 px: a 3x3 map pooled adaptively
    # to 6x6 before the flatten, whose CHW -> HWC re-ordering the outputs then test
    x = np.random.default_rng(0).normal(size=(2, 128, 128, 3)).astype("float32")
    sd, want32, want64 = torchvision_reference(tmp_path, "alexnet", x, 4, num_classes=7)
    saved = ct.convert(sd, "alexnet", tmp_path / "alexnet.npz", verbose=False)
    model = zoo.load("alexnet", weights=saved.path, input_shape=(128, 128, 3))
    report = model.zoo_load_report
    assert report.file_config["num_classes"] == 7 and len(report.loaded) == 8
    assert not report.adapted and not report.reinitialised and not report.skipped
    assert_matches(model(x), want32, want64)


@pytest.mark.slow  # 2 cases, measured 29.4 s and 44.7 s
@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_converted_real_torchvision_vgg(name, tmp_path, isolated_home):
    # full width (torchvision's VGG takes no width option) at 224 px: the zoo's VGG (keras.applications'
    # layout) flattens the 7x7 map torchvision's adaptive pool gives at that size
    x = np.random.default_rng(0).normal(size=(2, 224, 224, 3)).astype("float32")
    sd, want32, want64 = torchvision_reference(tmp_path, name, x, 5, num_classes=7)
    saved = ct.convert(sd, name, tmp_path / "vgg.weights.h5", verbose=False)
    model = zoo.load(name, weights=saved.path)
    report = model.zoo_load_report
    assert report.file_config["num_classes"] == 7 and len(report.loaded) == (16 if name.endswith("_bn") else 8) + 3
    assert not report.adapted and not report.reinitialised and not report.skipped
    assert_matches(model(x), want32, want64)


@pytest.mark.slow  # measured 22.4 s
def test_converted_real_torchvision_resnet50(tmp_path, isolated_home):
    # full width (torchvision's ResNet has no width option: width_per_group widens only the 3x3 conv of
    # each bottleneck, which the zoo's ResNet does not take) at 64 px
    x = np.random.default_rng(2).normal(size=(2, 64, 64, 3)).astype("float32")
    sd, want32, want64 = torchvision_reference(tmp_path, "resnet50", x, 6, num_classes=7)
    saved = ct.convert(sd, "resnet50_tv", tmp_path / "r50.safetensors", verbose=False)
    model = zoo.load("resnet50_tv", weights=saved.path, input_shape=(64, 64, 3))
    report = model.zoo_load_report
    assert report.file_config["num_classes"] == 7
    assert not report.adapted and not report.reinitialised and not report.skipped
    assert len(report.loaded) == len({k.rsplit(".", 1)[0] for k in sd if "num_batches" not in k})
    # 50 layers deep, torch's own float32 result is ~2e-4 off its float64 one (measured): the float64
    # comparison (Keras no further off than torch float32) is the strict one, as for DeepLab
    assert_matches(model(x), want32, want64, atol=1e-3)


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
    # deeplabv3: the resnet rules under backbone., DeepLabHead/ASPP and FCNHead indices
    keys = ["backbone.conv1", "backbone.layer3.0.downsample.1", "backbone.layer4.2.bn3", "classifier.0.convs.0.0",
            "classifier.0.convs.3.1", "classifier.0.convs.4.1", "classifier.0.convs.4.2", "classifier.0.project.0",
            "classifier.1", "classifier.2", "classifier.4", "aux_classifier.0", "aux_classifier.1", "aux_classifier.4"]
    assert list(ct.rename(dict.fromkeys(keys, {}), "deeplabv3").values()) == [
        "stem_conv", "stage3_block1_downsample_bn", "stage4_block3_bn3", "aspp_conv0_conv", "aspp_conv3_bn",
        "aspp_pool_conv", "aspp_pool_bn", "aspp_project_conv", "head_conv", "head_bn", "classifier", "aux_conv",
        "aux_bn", "aux_classifier"]
    with pytest.raises(SystemExit, match="'fc' has no mapping"):  # a classification ResNet is not a backbone
        ct.rename({"backbone.conv1": {}, "fc": {}}, "deeplabv3")


def test_unmapped_module_and_wrong_architecture_are_errors(tmp_path, isolated_home):
    sd = randomized(TorchResNet(False, (2, 2, 2, 2), width=8, num_classes=4)).state_dict()
    with pytest.raises(SystemExit, match="'aux.conv' has no mapping"):
        ct.convert({**sd, "aux.conv.weight": torch.zeros(1, 1, 1, 1)}, "resnet18", tmp_path / "x.npz",
                   overrides={"width": 8}, verbose=False)
    sd34 = TorchResNet(False, (3, 4, 6, 3), width=8, num_classes=4).state_dict()
    with pytest.raises(zoo.WeightsError, match="stage1_block3_conv1"):
        ct.convert(sd34, "resnet18", tmp_path / "y.npz", overrides={"width": 8}, verbose=False)
    assert not (tmp_path / "y.npz").exists()


def test_only_fitting_configs_are_converted(tmp_path, isolated_home):
    sd = {"classifier.4.weight": torch.zeros(3, 16, 1, 1), "classifier.4.bias": torch.zeros(3)}
    # deeplabv3 (no head_conv, 0.1 dropout) and deeplabv3plus are not torchvision's layout
    with pytest.raises(SystemExit, match=r"only into a model with variant='v3', head_conv=True, backbone_layout="
                       r"'torchvision', norm='batch'; deeplabv3 has head_conv=False\. Use --model ") as err:
        ct.convert(sd, "deeplabv3", tmp_path / "a.npz", verbose=False)
    assert "deeplabv3_resnet50" in str(err.value) and "deeplabv3_resnet101" in str(err.value)
    with pytest.raises(SystemExit, match=r"variant='v3plus', head_conv=False"):
        ct.convert(sd, "deeplabv3plus", tmp_path / "b.npz", verbose=False)
    with pytest.raises(SystemExit, match=r"backbone_layout='keras'"):
        ct.convert(sd, "deeplabv3_resnet50", tmp_path / "c.npz", overrides={"backbone_layout": "keras"},
                   verbose=False)
    with pytest.raises(SystemExit, match=r"variant='paper'\. Use --model googlenet_bn"):
        ct.convert({"fc.weight": torch.zeros(3, 8), "fc.bias": torch.zeros(3)}, "googlenet", tmp_path / "d.npz",
                   verbose=False)
    assert not list(tmp_path.iterdir())
