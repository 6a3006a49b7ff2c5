"""``zoo list``, ``zoo info NAME``, ``zoo build NAME``: the registry from the shell."""
import json
import sys

import numpy as np

from zoo.cli._common import model_kwargs, parse_shape
from zoo.hub import info, list_models, load
from zoo.hub.registry import get_registry


def _cmd_list(args):
    names = list_models(args.pattern, task=args.task, spatial_dims=args.spatial_dims,
                        pretrained=True if args.pretrained else None)
    reg = get_registry()
    if args.json:
        rows = [{"name": n, "task": reg.models[n].task, "spatial_dims": list(reg.models[n].spatial_dims),
                 "params": reg.models[n].params, "weights": sorted(reg.models[n].weights)} for n in names]
        print(json.dumps(rows, indent=2))
        return 0
    if args.names_only:
        print("\n".join(names))
        return 0
    width = max([len(n) for n in names] + [4])
    print(f"{'name':<{width}}  {'task':<14} {'dims':<5} {'params':>12}  weights")
    for n in names:
        e = reg.models[n]
        dims = ",".join(str(d) for d in e.spatial_dims)
        params = format(e.params, ",") if e.params is not None else "-"
        print(f"{n:<{width}}  {e.task:<14} {dims:<5} {params:>12}  {','.join(e.weights) or '-'}")
    print(f"{len(names)} model(s)", file=sys.stderr)
    return 0


def _cmd_info(args):
    data = info(args.name)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    weights = data.pop("weights", {})
    for key, value in data.items():
        print(f"{key + ':':<18}{value}")
    print("weights:" + ("" if weights else "          none (random initialisation only)"))
    for tag, spec in weights.items():
        print(f"  {tag}:")
        for key in ("url", "hash", "manual_download", "size", "format", "num_classes", "in_channels",
                    "spatial_dims", "license", "code_license", "commercial_use", "source", "upstream_version",
                    "upstream_metric", "preprocessing", "network_def", "notes"):
            if key in spec:
                value = spec[key]
                if key == "commercial_use":
                    value = "yes (the licences allow it)" if value else "no (non-commercial terms; see license)"
                elif key == "upstream_metric":
                    value = f"{_flat(value)}  (reported by the publisher, not measured by the zoo)"
                elif isinstance(value, dict):
                    value = _flat(value)
                print(f"    {key + ':':<17}{value}")
    return 0


def _flat(mapping, prefix=""):
    """``{a: 1, b: {c: 2}}`` -> ``a=1, b.c=2`` (one line)."""
    parts = [_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else f"{prefix}{k}={v}" for k, v in mapping.items()]
    return ", ".join(p for p in parts if p)


def _cmd_build(args):
    kwargs = model_kwargs(args)
    shape = parse_shape(args.input_shape)
    if shape is None and args.size is not None:  # the builder then checks the size (e.g. U-Net depth)
        dims = kwargs.get("spatial_dims") or get_registry().get(args.name).spatial_dims[0]
        shape = (args.size,) * dims
    if shape is not None:
        kwargs["input_shape"] = shape
    model = load(args.name, **kwargs)
    if args.summary:
        model.summary()
    in_shape = tuple(model.input_shape[1:])
    if any(s is None for s in in_shape[:-1]):
        size = args.size or 64
        in_shape = tuple(size if s is None else s for s in in_shape[:-1]) + in_shape[-1:]
    x = np.random.default_rng(0).standard_normal((1,) + in_shape).astype("float32")
    out = model(x, training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    print(f"{args.name}: {model.count_params():,} parameters; input {(1,) + in_shape} -> "
          f"output {', '.join(str(tuple(o.shape)) for o in outs)}")
    return 0


def add_parsers(sub):
    s = sub.add_parser("list", help="list registry models", description="List registry entries, sorted by "
                       "name.", epilog="example: zoo list 'resnet*' --spatial-dims 3 --json")
    s.add_argument("pattern", nargs="?", help="shell wildcard on the name, e.g. 'resnet*'")
    s.add_argument("--task", choices=("classification", "segmentation", "generation"), help="only this task")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="only entries with a 2D (or 3D) variant")
    s.add_argument("--pretrained", action="store_true", help="only entries with weights")
    s.add_argument("--names-only", action="store_true", help="print names only")
    s.add_argument("--json", action="store_true", help="print a JSON list (name, task, dims, params, weights)")
    s.set_defaults(func=_cmd_list)

    s = sub.add_parser("info", help="show one registry entry", description="Show one registry entry: "
                       "builder, config, paper, deviations, contract, weights.",
                       epilog="example: zoo info unet3d --json")
    s.add_argument("name", help="registry name (zoo list shows them)")
    s.add_argument("--json", action="store_true", help="print the entry as JSON")
    s.set_defaults(func=_cmd_info)

    s = sub.add_parser("build", help="build a model and run one forward pass on random input",
                       description="Build NAME (random weights) and run one forward pass; prints the "
                       "parameter count and the output shape.",
                       epilog="example: zoo build unet3d --size 96 --set filters=16 --num-classes 3")
    s.add_argument("name", help="registry name (zoo list shows them)")
    s.add_argument("--num-classes", type=int, help="classes of the head (0 = headless)")
    s.add_argument("--in-channels", type=int, help="input channels (1 for CT/MR)")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="2D or 3D variant")
    s.add_argument("--input-shape", help="e.g. 64,64,64,1 (spatial axes then channels)")
    s.add_argument("--size", type=int, help="spatial size per axis (default: the model's own, else 64)")
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="model keyword override, YAML value (repeatable), e.g. --set filters=8")
    s.add_argument("--summary", action="store_true", help="print the Keras summary")
    s.set_defaults(func=_cmd_build)
