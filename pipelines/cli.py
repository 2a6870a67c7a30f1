"""The `hubert` command. Each subcommand lives in `pipelines/commands/<name>.py`."""
from __future__ import annotations

import argparse
import errno
import os
import sys

# Bitwise-reproducible MKL on the CPU (results otherwise depend on memory alignment), so a
# resumed run matches an uninterrupted one; set before torch loads MKL. Override by exporting it.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from pipelines.commands import corpus, manifest
from pipelines.commands import configs, status
from pipelines.commands import features, kmeans, labels
from pipelines.commands import export, quality, run, train
from pipelines.commands import prune
# add one import per subcommand here, and its module to COMMANDS below

# In the order of the pipeline: its stages one by one, then the whole recipe, then its housekeeping.
COMMANDS = (corpus, manifest, features, kmeans, labels, train, export, quality, run, configs, status, prune)

EXAMPLES = """\
examples:
  hubert demo                                       # the whole recipe on built-in speech, CPU, minutes
  hubert run paper-base audio_dir=/data/LibriSpeech work_dir=work/ls
  hubert status work/ls                             # which stages are done
  hubert corpus data/corpus --hours 0.5            # built-in synthetic speech with phone alignments
  hubert manifest /data/audio work/manifest         # scan a folder of audio
  hubert <command> --help                           # what each command does, with an example
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubert", description="HuBERT self-supervised speech pretraining, end to end.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    # before the command (`hubert --debug run ...`) as well as after it; a separate name, since a
    # command's own --debug default would overwrite this one's value
    parser.add_argument("--debug", dest="debug_all", action="store_true",
                        help="show the full traceback of an error")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    _take_overrides(parser, args, extra)
    args.debug = args.debug or args.debug_all
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print(f"hubert {args.command}: interrupted; rerun the same command to continue", file=sys.stderr)
        return 130
    except Exception as error:  # one line for the user; the traceback only with --debug
        if args.debug:
            raise
        print(f"hubert {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return exit_code(error)


def _take_overrides(parser: argparse.ArgumentParser, args, extra: list[str]) -> None:
    """`key=value` overrides may follow options (`run CONFIG --until it1-labels work_dir=W`)."""
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra


def describe_error(error: BaseException) -> str:
    """The message a user reads: ours as written, system errors with the path and the fix."""
    if isinstance(error, OSError) and error.filename is not None and not isinstance(error, FileNotFoundError):
        hint = {errno.ENOTDIR: "a file stands where a folder is needed",
                errno.EEXIST: "it already exists as a file; give a folder path",
                errno.EISDIR: "it is a folder; give a file path",
                errno.EACCES: "permission denied", errno.ENOSPC: "the disk is full"}
        return f"{error.filename}: {hint.get(error.errno, error.strerror)}"
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return str(error)
    return f"{type(error).__name__}: {error} (an internal error; rerun with --debug for the traceback)"


def exit_code(error: BaseException) -> int:
    """143 (as after SIGTERM) when training stopped on a signal with a checkpoint saved, else 1 or 2."""
    trainer = sys.modules.get("pretrain.trainer")  # not loaded: the error cannot be one of its own
    if trainer is not None and isinstance(error, trainer.Preempted):
        return 143
    return 1 if isinstance(error, RuntimeError) else 2


if __name__ == "__main__":
    sys.exit(main())
