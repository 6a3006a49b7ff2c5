"""The ``zoo`` command. One module per group of subcommands, each with ``add_parsers(sub)``:
``models`` (list, info, build), ``train`` (finetune), ``predict``, ``export``, ``run`` (the main job),
``compress`` (compress,
recipes), ``datasets`` (the catalogue), ``sample`` (images from a GAN run), ``bench``. A new subcommand is a new
module here plus its name in ``COMMANDS``.

Errors end in one line on stderr and a non-zero exit code: 2 for a ZooError (bad input, with
what to do), 1 for anything unexpected (with a hint to rerun with ``--debug``, which shows the
traceback), 130 for Ctrl-C. A closed stdout (``zoo list | head -1``) ends quietly.
"""
import argparse
import importlib
import os
import re
import sys
import warnings

from zoo import __version__
from zoo.errors import ZooError

COMMANDS = ("run", "models", "train", "predict", "export", "compress", "datasets", "sample", "bench")
EXAMPLES = """examples:
  zoo run unet3d                           the main job: fine-tune, compress, export, verify (phantoms)
  zoo list --task segmentation            registry entries (add --json for scripts)
  zoo info unet3d                          one entry: config, paper, deviations, weights
  zoo finetune unet --epochs 2 --set filters=8 --out runs/demo
  zoo predict runs/demo image.png          segment or classify with a trained run
  zoo export runs/demo --quantization int8 --out demo.tflite   TFLite, verified in LiteRT
  zoo compress runs/demo --recipe prune_80 --epochs 2   prune, quantize or cluster a run
  zoo datasets list                        the data-set catalogue (TFDS builders)
  zoo finetune wgan_gp --epochs 5 --out runs/gan   train a GAN (phantoms by default)
  zoo sample runs/gan -n 64 --out samples.png      images from a trained GAN
  zoo bench resnet50                       parameters, GMACs, latency
"""


def _version():
    return f"zoo {__version__} (medzoo)"


def build_parser():
    p = argparse.ArgumentParser(prog="zoo", description="Medical imaging model zoo (tf_keras).",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"zoo.cli.{name}").add_parsers(sub)
    return p


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text if len(text) <= 600 else text[:597] + "..."


def _command_options(parser, command):
    """The option strings (``--patch-size`` ...) of subcommand ``command``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return set(action.choices[command]._option_string_actions)
    return set()


_TUPLE_HINT = re.compile(r"\b([a-z][a-z0-9_]*)=\(([0-9.\-]+(?:, ?[0-9.\-]+)*),?\)")
_VALUE_HINT = re.compile(r"\b([a-z][a-z0-9_]*)=('([^'\s]*)'|\"([^\"\s]*)\"|-?[0-9][0-9.e\-]*\b|True\b|[A-Z][A-Z_]*\b)"
                         r"( \(zoo [a-z]+ --[a-z\-]+(?: [^)]*)?\))?")
_LOAD_HINT = re.compile(r"\(?(?:e\.g\. )?zoo\.load\((?:name|'[a-z0-9_]+'|NAME)((?:, [a-z_]+=[^,()]+)+)\)\)?")
# the data source keywords a command passes through --data-option KEY=VALUE
DATA_OPTIONS = ("color_mode", "window", "normalize", "spacing", "orientation", "series_uid", "samples_per_volume",
                "fg_fraction", "image_size", "mask_suffix", "split", "manual_dir", "data_dir", "slice_range",
                "snr", "gaps")


ALIASES = {"gaps": "--dicom-gaps"}  # a keyword whose flag is named otherwise


def _flag(name, value, options):
    """``name=value`` in a command's words, or None where the command has no way to say it."""
    flag = ALIASES.get(name) if ALIASES.get(name) in options else "--" + name.replace("_", "-")
    if flag in options:
        return flag if value == "True" else f"{flag} {value}"
    if name in DATA_OPTIONS and "--data-option" in options:
        return f"--data-option {name}={value}"
    return None


def cli_words(text, options):
    """A message written for the Python API, in the shell's words where the command can say it:
    ``patch_size=(96, 96, 96)`` -> ``--patch-size 96,96,96``, ``verify='warn'`` -> ``--verify warn``,
    ``color_mode='grayscale'`` -> ``--data-option color_mode=grayscale``, ``zoo.load(name,
    in_channels=3)`` -> ``--in-channels 3``, ``zoo.run('unet3d')`` -> ``zoo run unet3d``,
    ``zoo.list_models()`` -> ``zoo list``."""
    def swap_tuple(match):
        flag = "--" + match.group(1).replace("_", "-")
        if flag not in options:
            return match.group(0)
        return f"{flag} {','.join(v.strip() for v in match.group(2).split(','))}"

    def swap_value(match):
        value = match.group(3) if match.group(3) is not None else match.group(4)
        words = _flag(match.group(1), match.group(2) if value is None else value, options)
        return match.group(0) if words is None else words

    def swap_load(match):
        pairs = [kw.strip().split("=", 1) for kw in match.group(1).split(",") if kw.strip()]
        words = [_flag(k, v.strip("'\""), options) for k, v in pairs]
        return match.group(0) if None in words else " ".join(words)

    text = _LOAD_HINT.sub(swap_load, text)
    text = _TUPLE_HINT.sub(swap_tuple, text)
    text = _VALUE_HINT.sub(swap_value, text)
    text = re.sub(r"\b([a-z][a-z0-9_]*)=\.\.\.", lambda m: _flag(m.group(1), "VALUE", options) or m.group(0), text)
    text = re.sub(r"(--[a-z\-]+(?: [^\s,;()]+)?) \(?\1\b\)?", r"\1", text)  # "--x 3 (e.g. x=3)" said once
    text = re.sub(r"zoo\.run\('([a-z0-9_]+)'\)", r"zoo run \1", text)
    return text.replace("zoo.list_models() (or `zoo list`)", "`zoo list`").replace("zoo.list_models()", "`zoo list`")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    """Warnings as one line, like errors (no source path, no source line)."""
    print(f"zoo: warning: {message}", file=file or sys.stderr)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # known before parsing, so a parser error can be debugged too
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _one_line_warning
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        hint = getattr(args, "interrupt_hint", None)  # a text, or a function giving it (run progress)
        hint = hint() if callable(hint) else hint
        print(f"\nzoo: interrupted{' ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (zoo list | head -1): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        except OSError:
            pass
        return 0
    except ZooError as e:
        if debug:
            raise
        print(f"zoo: error: {cli_words(_one_line(e), _command_options(parser, args.command))}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - the safety net: one line, never a bare traceback
        if debug:
            raise
        print(f"zoo: error: {type(e).__name__}: {_one_line(e)}\n"
              f"  (an unexpected error; rerun with --debug for the traceback, and please report it)",
              file=sys.stderr)
        return 1
