"""Helpers for the medical-weights tests (issue 22): torch peers, their outputs, test registries.

``MedicalNetRef`` is a PyTorch network written here from the facts of MedicalNet's paper and
repository (Tencent/MedicalNet ``models/resnet.py``: 7^3 stride-2 stem, stage 3/4 with stride 1
and dilation 2/4, shortcut A = sub-sampled identity with zero channels, B = 1x1 conv + BN, the
``conv_seg`` head), with MedicalNet's module names so its ``state_dict`` has the file's keys.
The MONAI networks are the real ones (``monai.networks.nets``).
"""
import hashlib

import numpy as np
import torch

nn = torch.nn


def randomize(net, seed=0):
    """Random norm affine parameters, BN running statistics and PReLU slopes (the default init
    leaves them at 1/0/0.25), so that a wrong mapping of any tensor changes the output; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)) and module.affine:
                module.weight.copy_(1 + 0.2 * torch.randn(module.weight.shape, generator=gen))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            if isinstance(module, nn.PReLU):
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) * 0.5)
            if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)) and \
                    module.bias is not None:
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
    return net.eval()


def torch_outputs(net, x):
    """``net``'s eval output on the channels-last batch ``x``, channels-last."""
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))))
    return np.moveaxis(out.numpy(), 1, -1)


def max_diff(got, want):
    got = np.asarray(got)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.std(want) > 0.01, "the reference output is (nearly) constant: the comparison would prove nothing"
    return float(np.abs(got - want).max())


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def inputs(shape, seed=0, batch=2):
    return np.random.default_rng(seed).standard_normal((batch,) + tuple(shape)).astype("float32")


# --------------------------------------------------------------------------- MedicalNet, re-created
class _ShortcutA(nn.Module):
    """Identity sub-sampled by ``stride`` with ``extra`` zero channels appended."""

    def __init__(self, stride, extra):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x):
        s = self.stride
        x = x[:, :, ::s, ::s, ::s]
        zeros = torch.zeros((x.shape[0], self.extra) + tuple(x.shape[2:]), dtype=x.dtype)
        return torch.cat([x, zeros], dim=1)


class _Block(nn.Module):
    def __init__(self, cin, planes, stride, dilation, shortcut, bottleneck):
        super().__init__()
        self.expansion = 4 if bottleneck else 1
        cout = planes * self.expansion
        if bottleneck:
            specs = [(cin, planes, 1, 1, 0, 1), (planes, planes, 3, stride, dilation, dilation),
                     (planes, cout, 1, 1, 0, 1)]
        else:
            specs = [(cin, planes, 3, stride, dilation, dilation), (planes, planes, 3, 1, dilation, dilation)]
        self.n = len(specs)
        for i, (ci, co, k, st, pad, dil) in enumerate(specs, start=1):
            setattr(self, f"conv{i}", nn.Conv3d(ci, co, k, st, pad, dil, bias=False))
            setattr(self, f"bn{i}", nn.BatchNorm3d(co))
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = _ShortcutA(stride, cout - cin) if shortcut == "A" else nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride, bias=False), nn.BatchNorm3d(cout))

    def forward(self, x):
        out = x
        for i in range(1, self.n + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            if i < self.n:
                out = torch.relu(out)
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class MedicalNetRef(nn.Module):
    LAYERS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3]}

    def __init__(self, depth, shortcut, width=64, seg_classes=None):
        super().__init__()
        bottleneck = depth == 50
        self.conv1 = nn.Conv3d(1, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.maxpool = nn.MaxPool3d(3, 2, 1)
        cin = width
        for i, (n, stride, dilation) in enumerate(zip(self.LAYERS[depth], (1, 2, 1, 1), (1, 1, 2, 4)), start=1):
            blocks = []
            for j in range(n):
                blocks.append(_Block(cin, width * 2 ** (i - 1), stride if j == 0 else 1, dilation, shortcut,
                                     bottleneck))
                cin = width * 2 ** (i - 1) * (4 if bottleneck else 1)
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.conv_seg = None
        if seg_classes:
            self.conv_seg = nn.Sequential(
                nn.ConvTranspose3d(cin, 32, 2, stride=2), nn.BatchNorm3d(32), nn.ReLU(),
                nn.Conv3d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm3d(32), nn.ReLU(),
                nn.Conv3d(32, seg_classes, 1, bias=False))

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x if self.conv_seg is None else self.conv_seg(x)


def monai_net(network_def, seed=0):
    """The real MONAI network of a bundle-style ``network_def`` (``_target_`` = a class name of
    ``monai.networks.nets``, bare or dotted), with seeded random weights."""
    from monai.networks import nets
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in network_def.items() if k != "_target_"}
    return randomize(getattr(nets, network_def["_target_"].rsplit(".", 1)[-1])(**kwargs), seed)


def converted_diff(network_def, shape):
    """Max abs difference between MONAI's ``eval()`` output and ``zoo.from_monai``'s model holding
    the same weights, on a seeded batch of ``shape`` (spatial..., channels)."""
    import zoo
    net = monai_net(network_def)
    x = inputs(shape)
    want = torch_outputs(net, x)
    model = zoo.from_monai(network_def, net.state_dict())
    return max_diff(model(x, training=False), want)
