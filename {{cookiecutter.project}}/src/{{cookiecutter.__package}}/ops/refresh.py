"""`make refresh`: replace the raw data with a fresh export, all or nothing."""

import argparse
import shutil
import urllib.request
from pathlib import Path

from .. import cli
from ..cli import UserError


def refresh(source: str, raw: Path) -> None:
    """Replace the raw data with a fresh export from a path or an http(s) URL (for example a
    presigned URL of the warehouse's daily export); the pipeline's validate stage judges it."""
    temporary = raw.with_suffix(".download")
    try:
        if "://" in source:
            with (
                urllib.request.urlopen(source, timeout=300) as response,
                temporary.open("wb") as out,
            ):
                shutil.copyfileobj(response, out)
        else:
            shutil.copyfile(source, temporary)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise UserError(f"cannot fetch {source}: {error}") from None
    temporary.replace(raw)  # all or nothing: a failed download leaves the old data in place


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="refresh", description=__doc__)
    parser.add_argument("source", help="a path or an http(s) URL")
    parser.add_argument("raw", type=Path)
    args = parser.parse_args(argv)
    if not args.source:
        raise UserError("no SOURCE: make refresh SOURCE=<path or URL of the fresh data>")
    refresh(args.source, args.raw)
    print(f"{args.raw} refreshed from {args.source}")


if __name__ == "__main__":
    cli.run(main)
