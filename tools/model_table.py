#!/usr/bin/env python
"""Print the README's model table from registry.yaml (``--check README.md`` to verify it).

The table sits between ``<!-- models:start -->`` and ``<!-- models:end -->`` in the README;
tests/test_readme.py fails when it no longer matches the registry.
"""
import argparse
import sys
from pathlib import Path

if __package__ in (None, "") and str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

START, END = "<!-- models:start -->", "<!-- models:end -->"


def table(registry=None):
    from zoo.hub.registry import get_registry
    reg = registry or get_registry()
    rows = ["| name | task | dims | params (Keras total) | trainable | weights | paper |",
            "|---|---|---|---:|---:|---|---|"]
    for name in reg.names():
        e = reg.models[name]
        trainable = f"{e.trainable_params:,}" if e.trainable_params is not None else ""
        rows.append(f"| `{name}` | {e.task} | {', '.join(map(str, e.spatial_dims))} | {e.params:,} | "
                    f"{trainable} | {', '.join(e.weights) or '-'} | {e.paper or ''} |")
    return "\n".join(rows)


def replace_in(text, new_table):
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{new_table}\n{END}{tail}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--check", metavar="README", help="exit 1 if README's table is stale")
    p.add_argument("--write", metavar="README", help="rewrite README's table in place")
    args = p.parse_args(argv)
    t = table()
    if args.check or args.write:
        path = Path(args.check or args.write)
        text = path.read_text()
        if START not in text or END not in text:
            print(f"{path}: markers {START} / {END} not found", file=sys.stderr)
            return 1
        new = replace_in(text, t)
        if args.write:
            path.write_text(new)
            return 0
        if new != text:
            print(f"{path}: model table is stale; run python tools/model_table.py --write {path}",
                  file=sys.stderr)
            return 1
        return 0
    print(t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
