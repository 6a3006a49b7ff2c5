"""The ``zoo`` command. One module per group of subcommands, each with ``add_parsers(sub)``:
``models`` (list, info, build), ``train`` (finetune), ``predict``, ``export``. A new subcommand is a new
module here plus its name in ``COMMANDS``."""
import argparse
import importlib
import sys
import warnings

from zoo.errors import ZooError

COMMANDS = ("models", "train", "predict", "export")


def build_parser():
    p = argparse.ArgumentParser(prog="zoo", description="Medical imaging model zoo (tf_keras).")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"zoo.cli.{name}").add_parsers(sub)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line, like errors (no source path, no source line)."""
    print(f"zoo: warning: {message}", file=file or sys.stderr)


def main(argv=None):
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args)
    except ZooError as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return 2
