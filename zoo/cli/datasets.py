"""``zoo datasets list|info|prepare``: the catalogue of named data sets from the shell."""
# The commands import what they need (TensorFlow through zoo.api, zoo.train ...) when they run, so that
# `zoo list` stays instant: the in-function imports below are deliberate.
import json
import sys


def _cmd_list(args):
    from zoo.datasets import list_datasets
    rows = list_datasets(args.pattern, task=args.task, spatial_dims=args.spatial_dims)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.names_only:
        print("\n".join(r["name"] for r in rows))
        return 0
    width = max([len(r["name"]) for r in rows] + [4])
    print(f"{'name':<{width}}  {'task':<14} {'dims':>4} {'ch':>3} {'classes':>7}  {'get':<8} licence")
    for r in rows:
        get = "download" if r["download"] else ("built-in" if not r["files"] or "generated" in r["files"][0]
                                                else "manual")
        print(f"{r['name']:<{width}}  {r['task']:<14} {r['spatial_dims']:>4} {r['channels']:>3} "
              f"{len(r['classes']):>7}  {get:<8} {r['license']}")
    print(f"{len(rows)} data set(s); `zoo datasets info NAME` shows the files to place in manual_dir",
          file=sys.stderr)
    return 0


def _cmd_info(args):
    from zoo.datasets import info
    data = info(args.name)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for key in ("name", "description", "task", "spatial_dims", "channels", "license", "homepage",
                "source", "download", "version"):
        print(f"{key + ':':<14}{data[key] if data[key] not in (None, '') else '-'}")
    print(f"{'classes:':<14}{', '.join(f'{i} {c}' for i, c in enumerate(data['classes']))}")
    print("manual_dir:   " + "\n              ".join(data["files"]))
    return 0


def _cmd_prepare(args):
    from zoo.datasets import prepare
    builder = prepare(args.name, manual_dir=args.manual_dir, data_dir=args.data_dir,
                      overwrite=args.overwrite)
    splits = ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items())
    print(f"prepared {args.name} in {builder.data_dir}: {splits}")
    data_dir = f", data_options={{'data_dir': {args.data_dir!r}}}" if args.data_dir else ""
    print(f"  use it: zoo.datasets.load({args.name!r}, split='train'"
          f"{f', data_dir={args.data_dir!r}' if args.data_dir else ''}) or "
          f"zoo.finetune(model, train='tfds:{args.name}'{data_dir})")
    return 0


def add_parsers(sub):
    group = sub.add_parser("datasets", help="the catalogue of named data sets (TFDS builders)",
                           description="List, describe and prepare the catalogue's data sets.",
                           epilog="example: zoo datasets list 'medmnist/*' --names-only")
    commands = group.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND",
                                    help="list, info or prepare")

    s = commands.add_parser("list", help="list the catalogue's data sets",
                            epilog="example: zoo datasets list 'medmnist/*3d*' --task classification")
    s.add_argument("pattern", nargs="?", help="shell wildcard on the name, e.g. 'medmnist/*3d*'")
    s.add_argument("--task", choices=("segmentation", "classification", "multilabel"), help="only this task")
    s.add_argument("--spatial-dims", type=int, choices=(2, 3), help="only 2D or only 3D data sets")
    s.add_argument("--names-only", action="store_true", help="print names only")
    s.add_argument("--json", action="store_true", help="print a JSON list")
    s.set_defaults(func=_cmd_list)

    s = commands.add_parser("info", help="show one data set: source, licence, files for manual_dir",
                            epilog="example: zoo datasets info decathlon/task04_hippocampus")
    s.add_argument("name", help="e.g. decathlon/task04_hippocampus")
    s.add_argument("--json", action="store_true", help="print the data set's card as JSON")
    s.set_defaults(func=_cmd_info)

    s = commands.add_parser("prepare", help="prepare a data set from its files in --manual-dir",
                            description="Read the data set's source files from --manual-dir (or "
                            "download them where they are public, not with ZOO_OFFLINE=1) and write "
                            "TFDS's files into --data-dir; a prepared data set is reused.",
                            epilog="example: zoo datasets prepare isbi2012_em --manual-dir ~/Downloads/isbi")
    s.add_argument("name", help="e.g. isbi2012_em or decathlon/task04_hippocampus")
    s.add_argument("--manual-dir", help="folder holding the downloaded files (default: "
                   "<data-dir>/downloads/manual)")
    s.add_argument("--data-dir", help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    s.add_argument("--overwrite", action="store_true", help="prepare again even if already prepared")
    s.set_defaults(func=_cmd_prepare)
