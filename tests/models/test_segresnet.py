"""zoo.models.segresnet against the real monai.networks.nets.SegResNet (MONAI 1.6.1): parameter counts
of the BraTS and whole-body bundles, outputs with the same weights in 2D and 3D, options, errors."""
import numpy as np
import pytest
from _medical_ref import converted_diff, inputs, max_diff, monai_net, torch_outputs

import zoo
from zoo.errors import InvalidArgumentError
from zoo.models.segresnet import segresnet

BRATS = {"_target_": "SegResNet", "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "init_filters": 16,
         "in_channels": 4, "out_channels": 3, "dropout_prob": 0.2}
WHOLEBODY = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 105, "init_filters": 32,
             "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1], "dropout_prob": 0.2}


@pytest.mark.parametrize("network_def", [BRATS, WHOLEBODY], ids=["brats", "wholebody"])
def test_parameter_counts_equal_monai(network_def):
    net = monai_net(network_def)
    numel = sum(p.numel() for p in net.parameters())
    model = zoo.from_monai(network_def, net.state_dict())
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    assert trainable == model.count_params() == numel  # group norm: no running statistics


CASES = {
    "brats-3d": (BRATS, (16, 16, 16, 4)),  # the bundle at full width
    "brats-2d": ({**BRATS, "spatial_dims": 2}, (32, 24, 4)),
    "wholebody-3d": ({**WHOLEBODY, "init_filters": 8}, (16, 16, 8, 1)),  # 105 classes, 1/4 width
    "deconv-relu6-2d": ({"_target_": "SegResNet", "spatial_dims": 2, "init_filters": 8, "in_channels": 2,
                         "out_channels": 2, "blocks_down": [1, 1, 2], "blocks_up": [2, 1], "upsample_mode": "deconv",
                         "act": "relu6", "norm": ["group", {"num_groups": 4}]}, (16, 16, 2)),
    "instance-3d": ({"_target_": "SegResNet", "init_filters": 4, "blocks_down": [1, 1], "blocks_up": [1],
                     "norm": "instance", "act": ["elu", {"alpha": 0.5}]}, (8, 8, 8, 1)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_outputs_equal_monai(case):
    diff = converted_diff(*CASES[case])
    print(f"{case}: max abs diff {diff:.2e}")
    assert diff <= 1e-4


def test_headless_and_errors():
    net = monai_net({**BRATS, "use_conv_final": False, "init_filters": 8})
    x = inputs((8, 8, 8, 4))
    model = zoo.from_monai({**BRATS, "use_conv_final": False, "init_filters": 8}, net.state_dict())
    assert model.output_shape[-1] == 8 and "classifier" not in [layer.name for layer in model.layers]
    assert max_diff(model(x), torch_outputs(net, x)) <= 1e-4
    with pytest.raises(InvalidArgumentError, match=r"divisible by 8; got 12 on axis 0 .* use 8 or 16"):
        segresnet(input_shape=(12, 16, 16, 1))
    with pytest.raises(InvalidArgumentError, match=r"blocks_up=\[1, 1\] needs len\(blocks_down\) - 1 = 3"):
        segresnet(blocks_up=[1, 1])
    with pytest.raises(InvalidArgumentError, match=r"a PReLU would be shared"):
        segresnet(activation="prelu")
    with pytest.raises(InvalidArgumentError, match=r"not divisible by num_groups=8"):
        segresnet(init_filters=4)
    with pytest.raises(InvalidArgumentError, match=r"upsample_mode='pixelshuffle' is not supported"):
        segresnet(upsample_mode="pixelshuffle")
