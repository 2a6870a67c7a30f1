"""One module per `hubert` subcommand: each parses its arguments and calls one library function."""
from __future__ import annotations

import argparse


def add_command(subparsers, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    """A subcommand parser whose --help says what it does and shows `example`."""
    parser = subparsers.add_parser(
        name, help=summary, description=summary,
        epilog="example:\n  " + example.strip().replace("\n", "\n  "),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def csv_list(text: str) -> tuple[str, ...]:
    """'a,b, c' -> ('a', 'b', 'c')."""
    return tuple(part.strip() for part in text.split(",") if part.strip())
