"""``python -m bench.gpu <subcommand>``: the subcommands of :mod:`bench.gpu`, one module each."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import bench.gpu
from bench.gpu import profile, reference, summary, versions, weights


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gpu", description=bench.gpu.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in (versions, weights, profile, reference, summary):
        module.add_parsers(commands)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
