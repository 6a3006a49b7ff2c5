"""Reference outputs of torch modules for tests/tools/test_convert_torchvision.py.

Imported by the tests (plain ``torch`` only) and run as a script for REAL torchvision modules:

    python tests/_torch_ref.py MODEL KWARGS_JSON INPUT.npy SEED OUT_DIR

builds ``torchvision.models.MODEL(**KWARGS)`` (``segmentation.`` prefix allowed; random init, no
download), randomises its weights and BN statistics (:func:`randomized`), and writes
``OUT_DIR/state.pth`` (its state dict) and ``OUT_DIR/outputs.npz`` (``f32_i`` / ``f64_i``: output
``i`` in float32 and float64, NHWC). It runs in its own process because importing
``torch._dynamo`` (which torchvision does) after TensorFlow crashes the process with torch 2.14.1's
build (a segmentation fault in the import); ``torch.load`` and plain torch after TensorFlow are fine.
"""
import json
import sys

import numpy as np
import torch

nn = torch.nn


def randomized(net, seed=0, calibrate=None):
    """He-normal conv/linear weights (activations keep their scale without BN too), random BN
    statistics/affine params and biases; eval mode.

    ``calibrate``: an input batch. Each BN's statistics are then set, in one eval-mode pass, to
    those of its actual input times random factors (var x U(0.5, 1.5), mean shifted by 0.1 std),
    so that activations stay O(1) through a deep net and the outputs depend on every layer
    (BNs that see fewer than 32 values per channel keep the random statistics).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("weight") and t.ndim >= 2:
                t.copy_(torch.randn(t.shape, generator=gen) * (2 / t[0].numel()) ** 0.5)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith(("running_mean", "bias")) or (name.endswith("weight") and t.ndim == 1):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
        if calibrate is not None:
            def set_statistics(bn, args):  # runs before the BN: its input is the eval-mode input
                x = args[0].transpose(0, 1).flatten(1)
                if x.shape[1] >= 32:  # not e.g. DeepLab's pooled branch (batch x 1 x 1 values)
                    var = x.var(1, unbiased=False) + 1e-3
                    bn.running_var.copy_(var * (torch.rand(var.shape, generator=gen) + 0.5))
                    bn.running_mean.copy_(x.mean(1) + torch.randn(var.shape, generator=gen) * 0.1 * var.sqrt())

            hooks = [m.register_forward_pre_hook(set_statistics) for m in net.modules()
                     if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            net.eval()(to_torch(calibrate))
            for hook in hooks:
                hook.remove()
    return net.eval()


def to_torch(x):
    return torch.from_numpy(x.transpose(0, 3, 1, 2)) if isinstance(x, np.ndarray) else x


def _as_list(out):
    return list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else [out]


def reference_outputs(net, x, extra=None):
    """``(float32 outputs, float64 outputs)`` of ``net`` on NHWC ``x`` (NHWC / 2D arrays).
    ``extra(net, x_torch, outputs)`` may append outputs (e.g. heads eval mode does not run)."""
    want = {}
    for dtype in (torch.float64, torch.float32):  # leaves the net in float32
        with torch.no_grad():
            xt = to_torch(x).to(dtype)
            out = _as_list(net.to(dtype)(xt))
            if extra is not None:
                out = extra(net, xt, out)
        want[dtype] = [o.numpy().transpose(0, 2, 3, 1) if o.ndim == 4 else o.numpy() for o in out]
    return want[torch.float32], want[torch.float64]


def assert_matches(got, want32, want64, atol=1e-4):
    """``got`` (a Keras output or list of outputs) equals the reference outputs.

    Only float32 rounding may differ: within ``atol`` of torch's float32 outputs, and no further
    from torch's float64 outputs than torch's own float32 outputs are (x2, + 1e-6). The outputs
    must also depend on the input (the two samples' outputs differ by > 0.01).
    """
    got = [np.asarray(g) for g in (got if isinstance(got, (list, tuple)) else [got])]
    assert len(got) == len(want32), (len(got), len(want32))
    for i, (g, w, w64) in enumerate(zip(got, want32, want64)):
        assert g.shape == w.shape and np.abs(w[0] - w[1]).max() > 0.01, (i, g.shape, w.shape)
        diff, ours, own = np.abs(g - w).max(), np.abs(g - w64).max(), np.abs(w - w64).max()
        assert diff <= atol and ours <= 2 * own + 1e-6, (i, diff, ours, own)


def _googlenet_aux(net, xt, out):
    """Eval-mode GoogLeNet computes only the logits: apply its aux heads to 4a's and 4d's outputs."""
    if not getattr(net, "aux_logits", False):
        return out
    taps = {}
    hooks = [getattr(net, k).register_forward_hook(lambda m, i, o, k=k: taps.__setitem__(k, o))
             for k in ("inception4a", "inception4d")]
    net(xt)
    for hook in hooks:
        hook.remove()
    return out + [net.aux1(taps["inception4a"]), net.aux2(taps["inception4d"])]


def main(argv):
    import torchvision.models as tv_models

    name, kwargs, x_path, seed, out_dir = argv
    module = tv_models
    if name.startswith("segmentation."):
        module, name = tv_models.segmentation, name.split(".", 1)[1]
    torch.manual_seed(int(seed))
    x = np.load(x_path)
    net = randomized(getattr(module, name)(weights=None, **json.loads(kwargs)), seed=int(seed), calibrate=x)
    torch.save(net.state_dict(), f"{out_dir}/state.pth")
    want32, want64 = reference_outputs(net, x, _googlenet_aux if name == "googlenet" else None)
    np.savez(f"{out_dir}/outputs.npz", **{f"f32_{i}": w for i, w in enumerate(want32)},
             **{f"f64_{i}": w for i, w in enumerate(want64)})


if __name__ == "__main__":
    main(sys.argv[1:])
