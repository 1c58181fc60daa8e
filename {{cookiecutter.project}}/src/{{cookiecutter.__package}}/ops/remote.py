"""`make pull` and `make push`: DVC transfers, then proof that every file really arrived.

An interrupted push or a partial pull can exit 0; the status DVC computes afterwards cannot lie.
"""

import argparse
from typing import Any

from dvc.exceptions import DvcException
from dvc.repo import Repo

from .. import cli

ABSENT = {"deleted", "not in cache"}


def absent_outputs(status: dict[str, Any]) -> list[str]:
    """Outputs recorded in dvc.lock or a .dvc file that are not in the workspace."""
    return sorted(
        path
        for changes in status.values()
        for change in changes
        if isinstance(change, dict)
        for path, state in change.get("changed outs", {}).items()
        if state in ABSENT
    )


def pull(repo: Repo) -> None:
    """Fetch every tracked input and output; fail naming any that did not arrive."""
    try:
        repo.pull()
    except DvcException as error:
        raise cli.UserError(f"dvc pull failed: {error}; check the remote's credentials") from None
    absent = absent_outputs(repo.status())
    if absent:
        raise cli.UserError(
            f"dvc pull left out {', '.join(absent)}: push them from where they were made"
        )


def push(repo: Repo) -> None:
    """Send every output and the run cache; fail naming any that the remote still lacks."""
    try:
        repo.push(run_cache=True)
    except DvcException as error:
        raise cli.UserError(f"dvc push failed: {error}; check the remote's credentials") from None
    # "new": only here; "missing": nowhere. "deleted" (only in the remote) is fine.
    unsent = sorted(path for path, state in repo.status(cloud=True).items() if state != "deleted")
    if unsent:
        raise cli.UserError(f"the remote lacks {', '.join(unsent)} after dvc push")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="remote", description=__doc__)
    parser.add_argument("command", choices=["pull", "push"])
    args = parser.parse_args(argv)
    with Repo() as repo:
        if args.command == "pull":
            pull(repo)
        else:
            push(repo)
    where = "here" if args.command == "pull" else "in the remote"
    print(f"dvc {args.command}: every tracked file is {where}")


if __name__ == "__main__":
    cli.run(main)
