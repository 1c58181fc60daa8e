"""`make pull`, `make push`, `make status`: DVC transfers and the pipeline's state, each checked.

An interrupted push or a partial pull can exit 0; the status DVC computes afterwards cannot lie.
Pull requests may only push to the quarantine remote `pr`: `make pull` takes from there what the
remote lacks, and `verify = true` on that remote makes DVC drop any object whose content does not
hash to the name dvc.lock gives it. The release then pushes what it took to the remote.
"""

import argparse
from typing import Any

from dvc.exceptions import CheckoutError, DvcException
from dvc.repo import Repo

from .. import cli

ABSENT = {"deleted", "not in cache"}
QUARANTINE = "pr"
Status = dict[str, Any]


def absent_outputs(status: Status) -> tuple[list[str], list[str]]:
    """Tracked data (.dvc files) and pipeline outputs (dvc.lock) missing from the workspace."""
    data: set[str] = set()
    outputs: set[str] = set()
    for name, changes in status.items():
        for change in changes:
            if isinstance(change, dict):
                for path, state in change.get("changed outs", {}).items():
                    if state in ABSENT:
                        (data if name.endswith(".dvc") else outputs).add(path)
    return sorted(data), sorted(outputs)


def fetch(repo: Repo, remote: str | None) -> None:
    try:
        repo.fetch(remote=remote)
    except DvcException as error:
        where = f"the {remote} remote" if remote else "the remote"
        raise cli.UserError(
            f"dvc pull from {where} failed: {error}; check its credentials"
        ) from None


def checkout(repo: Repo) -> tuple[list[str], list[str]]:
    """Check out what the cache holds; what is still missing."""
    try:
        repo.checkout()
    except CheckoutError:
        pass  # what is missing is named from the status below
    except DvcException as error:  # e.g. it would overwrite outputs that no cache holds
        raise cli.UserError(f"dvc checkout refused: {' '.join(str(error).split())[:300]}") from None
    return absent_outputs(repo.status())


def pull(repo: Repo) -> None:
    """Fetch every tracked input and output; fail naming any that did not arrive."""
    fetch(repo, None)
    data, outputs = checkout(repo)
    if (data or outputs) and QUARANTINE in repo.config["remote"]:
        fetch(repo, QUARANTINE)
        data, outputs = checkout(repo)
    if data:
        raise cli.UserError(
            f"the remote has no copy of {', '.join(data)}: if it is empty, run `make push` once "
            "from the clone where the data is (after `make setup`, a fresh bake's clone)"
        )
    if outputs:
        raise cli.UserError(
            f"neither remote holds {', '.join(outputs)} as dvc.lock records them: the pull "
            f"request that trained them pushes them (`make push REMOTE={QUARANTINE}`); or run "
            "`make train` and `make push` where you can write the remote"
        )


def push(repo: Repo, remote: str | None) -> None:
    """Send every output and the run cache; fail naming any that the remote still lacks."""
    try:
        repo.push(run_cache=True, remote=remote)
    except DvcException as error:
        raise cli.UserError(f"dvc push failed: {error}; check the remote's credentials") from None
    # "new": only here; "missing": nowhere. "deleted" (only in the remote) is fine.
    status = repo.status(cloud=True, remote=remote)
    unsent = sorted(path for path, state in status.items() if state != "deleted")
    if unsent:
        raise cli.UserError(f"the remote lacks {', '.join(unsent)} after dvc push")


def describe(paths: dict[str, Any]) -> str:
    """`path state` for each changed path; `path:key state` for each changed param."""
    shown = []
    for path, state in paths.items():
        if isinstance(state, dict):
            shown += [f"{path}:{key} {change}" for key, change in state.items()]
        else:
            shown.append(f"{path} {state}")
    return ", ".join(shown)


def changes(status: Status) -> list[str]:
    """Each stage or .dvc file whose record differs from the workspace, with what differs."""
    found = []
    for name, entries in status.items():
        parts = [
            part
            for entry in entries
            for part in (
                [entry]
                if isinstance(entry, str)
                else [f"{kind} {describe(paths)}" for kind, paths in entry.items()]
            )
        ]
        found.append(f"{name} ({'; '.join(parts)})")
    return found


def status(repo: Repo) -> None:
    """Refuse unless every stage is up to date with dvc.lock and every output is here."""
    if found := changes(repo.status()):
        raise cli.UserError(
            f"dvc.lock does not describe this commit: {', '.join(found)}. If `make pull` "
            "passed, changes merged that were never trained together: train them on a pull "
            "request from here, and require branches to be up to date (or a merge queue) on main"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="remote", description=__doc__)
    parser.add_argument("command", choices=["pull", "push", "status"])
    parser.add_argument("--remote", help=f"push to this DVC remote (pull requests: {QUARANTINE})")
    args = parser.parse_args(argv)
    with Repo() as repo:
        if args.command == "pull":
            pull(repo)
            print("dvc pull: every tracked file is here")
        elif args.command == "push":
            push(repo, args.remote)
            print(f"dvc push: every tracked file is in the {args.remote or 'default'} remote")
        else:
            status(repo)
            print("dvc status: dvc.lock describes this commit and every output is here")


if __name__ == "__main__":
    cli.run(main)
