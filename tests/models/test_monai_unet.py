"""zoo.models.monai_unet against the real monai.networks.nets.UNet (MONAI 1.6.1): parameter counts,
outputs with the same weights (2D and 3D, every option the converter maps), errors, LinearUpsampling."""
import numpy as np
import pytest
import torch
from _medical_ref import converted_diff, monai_net

import zoo
from zoo.errors import InvalidArgumentError
from zoo.models.layers import LinearUpsampling
from zoo.models.monai_unet import monai_unet

SPLEEN = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
          "channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2, "norm": "batch"}
PROSTATE = {"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3,
            "channels": [16, 32, 64, 128, 256, 512], "strides": [2, 2, 2, 2, 2], "num_res_units": 4,
            "norm": "batch", "act": "prelu", "dropout": 0.15}


def _counts(model):
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return trainable, model.count_params()


@pytest.mark.parametrize("network_def,size", [(SPLEEN, 96), (PROSTATE, 96)], ids=["spleen", "prostate"])
def test_parameter_counts_equal_monai(network_def, size):
    net = monai_net(network_def)
    numel = sum(p.numel() for p in net.parameters())
    stats = sum(b.numel() for k, b in net.state_dict().items() if k.endswith(("running_mean", "running_var")))
    model = zoo.from_monai(network_def, net.state_dict(), input_shape=(size,) * 3 + (1,))
    assert _counts(model) == (numel, numel + stats)


CASES = {
    # the spleen bundle's layout (residual units, batch norm, PReLU) at 1/4 width, 2D and 3D
    "spleen-2d": ({**SPLEEN, "spatial_dims": 2, "channels": [4, 8, 16, 32, 64]}, (32, 32, 1)),
    "spleen-3d": ({**SPLEEN, "channels": [4, 8, 16, 32, 64]}, (16, 16, 16, 1)),
    # the prostate bundle's: 6 levels, 4 units, dropout (inactive in eval), 1/8 width
    "prostate-3d": ({**PROSTATE, "channels": [2, 4, 8, 16, 32, 64]}, (32, 32, 32, 1)),
    # MONAI's defaults: no residual units, instance norm without affine, PReLU; the top is a bare transposed conv
    "plain-2d": ({"_target_": "UNet", "spatial_dims": 2, "in_channels": 3, "out_channels": 4, "channels": [4, 8, 16],
                  "strides": [2, 2]}, (24, 40, 3)),
    "plain-3d": ({"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "in_channels": 2, "out_channels": 3,
                  "channels": [4, 8, 16], "strides": [2, 2]}, (8, 16, 12, 2)),
    # other options: group norm with affine, leaky ReLU, ADN order, no bias, kernel 5, a stride-1 level,
    # per-axis strides
    "options-2d": ({"_target_": "UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2,
                    "channels": [4, 8, 16, 16],
                    "strides": [2, [1, 2], 1], "kernel_size": 5, "up_kernel_size": 3, "num_res_units": 1,
                    "norm": ["group", {"num_groups": 2}], "act": ["leakyrelu", {"negative_slope": 0.1}],
                    "adn_ordering": "AN", "bias": False}, (16, 32, 1)),
    "instance-affine-3d": ({"_target_": "UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
                            "channels": [4, 8, 8], "strides": [2, 2], "num_res_units": 2,
                            "norm": ["instance", {"affine": True}], "act": "relu"}, (8, 8, 8, 1)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_equal_monai(case):
    diff = converted_diff(*CASES[case])
    print(f"{case}: max abs diff {diff:.2e}")
    assert diff <= 1e-4


def test_static_size_and_argument_errors():
    with pytest.raises(InvalidArgumentError, match=r"divisible by 16 .* got 40 .* use 32 or 48"):
        monai_unet(channels=[4, 8, 16, 32, 64], input_shape=(40, 32, 32, 1))
    with pytest.raises(InvalidArgumentError, match=r"up_kernel_size=1 .* at least 2 \* stride - 1 = 3"):
        monai_unet(spatial_dims=2, channels=[4, 8], strides=[2], up_kernel_size=1)
    with pytest.raises(InvalidArgumentError, match=r"strides=\[2\] has 1 values but channels has 3 levels"):
        monai_unet(channels=[4, 8, 16], strides=[2])
    with pytest.raises(InvalidArgumentError, match=r"norm='layer' is not supported; allowed: batch, instance, group"):
        monai_unet(norm="layer")
    with pytest.raises(InvalidArgumentError, match=r"num_groups"):
        monai_unet(norm="group")
    with pytest.raises(InvalidArgumentError, match=r"activation='swish' is not supported"):
        monai_unet(activation="swish")
    with pytest.raises(InvalidArgumentError, match=r"num_classes=0 must be an integer >= 1"):
        monai_unet(num_classes=0)
    with pytest.raises(InvalidArgumentError, match=r"is a bundle expression or reference"):
        zoo.from_monai({**SPLEEN, "channels": "@channels"}, {})
    with pytest.raises(InvalidArgumentError, match=r"_target_='BasicUNet' is not a supported MONAI network; "
                                                   r"supported: UNet, SegResNet"):
        zoo.from_monai({"_target_": "BasicUNet"}, {})


@pytest.mark.parametrize("shape,size", [((1, 5, 7, 3), 2), ((2, 3, 4, 5, 2), 2), ((1, 4, 6, 2), 3)])
def test_linear_upsampling_equals_torch_interpolate(shape, size):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    mode = "bilinear" if len(shape) == 4 else "trilinear"
    with torch.no_grad():
        want = torch.nn.functional.interpolate(torch.from_numpy(np.moveaxis(x, -1, 1).copy()), scale_factor=size,
                                               mode=mode, align_corners=False).numpy()
    got = LinearUpsampling(size)(x).numpy()
    assert np.abs(got - np.moveaxis(want, 1, -1)).max() <= 1e-5
