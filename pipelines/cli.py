"""The `hubert` command. Each subcommand lives in `pipelines/commands/<name>.py`."""
from __future__ import annotations

import argparse
import os
import sys

# Bitwise-reproducible MKL on the CPU (results otherwise depend on memory alignment), so a
# resumed run matches an uninterrupted one; set before torch loads MKL. Override by exporting it.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")

from pipelines.commands import corpus, manifest
from pipelines.commands import status
from pipelines.commands import features, kmeans, labels
from pipelines.commands import export, quality, run, train
# add one import per subcommand here, and its module to COMMANDS below

COMMANDS = (corpus, manifest, features, kmeans, labels, quality, train, export, run, status)

EXAMPLES = """\
examples:
  hubert demo                                       # the whole recipe on built-in speech, CPU, minutes
  hubert run configs/paper-base.toml audio_dir=/data/LibriSpeech work_dir=work/ls
  hubert status work/ls                             # which stages are done
  hubert corpus data/corpus --hours 0.5            # built-in synthetic speech with phone alignments
  hubert manifest /data/audio work/manifest         # scan a folder of audio
  hubert <command> --help                           # what each command does, with an example
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubert", description="HuBERT self-supervised speech pretraining, end to end.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except (ValueError, FileNotFoundError) as error:  # our errors name the file and the fix
        print(f"hubert {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
