"""Entry points of the stages: a user's mistake is one line on stderr, never a traceback."""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """A mistake in data, params or arguments that the user fixes; the message says how."""


def run(main: Callable[[list[str]], None]) -> None:
    """Call main with the command-line arguments and turn user errors into one line and exit 1."""
    prog = Path(sys.argv[0]).stem
    try:
        main(sys.argv[1:])
    except UserError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        sys.exit(1)
    except FileNotFoundError as error:
        print(f"{prog}: {error.filename or error}: no such file", file=sys.stderr)
        sys.exit(1)


def paths(argv: list[str], description: str | None, *names: str) -> argparse.Namespace:
    """A stage's command line: the paths dvc.yaml's cmd gives it, in order, by name."""
    parser = argparse.ArgumentParser(prog=Path(sys.argv[0]).stem, description=description)
    for name in names:
        parser.add_argument(name, type=Path)
    return parser.parse_args(argv)
