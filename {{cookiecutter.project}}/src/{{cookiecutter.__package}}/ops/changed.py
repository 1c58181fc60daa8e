"""`make changed`: whether a change touches what the pipeline reads, so CI trains only then.

The train workflow runs on every pull request (a required check must always report) and asks this
first: a change to docs, deployment or workflows passes quickly, a change to data, params, stage
code or the pipeline trains. What the pipeline reads is what dvc.yaml declares, as for `dvc repro`.
"""

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .. import cli

PIPELINE = Path("dvc.yaml")


def inputs(pipeline: dict[str, Any]) -> set[str]:
    """Every path a stage depends on, every params file, and the pipeline's own files."""
    found = {"dvc.yaml", "dvc.lock"}
    for stage in (pipeline.get("stages") or {}).values():
        found.update(dep for dep in stage.get("deps", []) if isinstance(dep, str))
        for entry in stage.get("params", []):
            # `- section` reads params.yaml; `- other.yaml: [keys]` reads another file.
            if isinstance(entry, dict):
                found.update(entry)
            else:
                found.add("params.yaml")
    return found


def touched(changed: list[str], watched: set[str]) -> list[str]:
    """The changed paths the pipeline reads: watched ones, files in watched folders, .dvc files."""
    folders = tuple(path.rstrip("/") + "/" for path in watched)
    return [
        path
        for path in changed
        if path in watched or path.startswith(folders) or path.endswith(".dvc")
    ]


def changed_paths(base: str) -> list[str]:
    """The paths changed on this side since it left BASE (`git diff BASE...HEAD`)."""
    diff = subprocess.run(
        ["git", "diff", "--name-only", "--relative", f"{base}...HEAD"],
        capture_output=True,
        text=True,
    )
    if diff.returncode != 0:
        raise cli.UserError(
            f"cannot compare with {base!r}: {' '.join(diff.stderr.split())[:200]}; "
            "fetch it (in CI, check out with fetch-depth: 0)"
        )
    return diff.stdout.splitlines()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="changed", description=__doc__)
    parser.add_argument("--base", required=True, help="the git revision to compare with")
    args = parser.parse_args(argv)
    found = touched(changed_paths(args.base), inputs(yaml.safe_load(PIPELINE.read_text())))
    if found:
        shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        print(f"the pipeline's inputs changed since {args.base}: {shown}")
    else:
        print(f"no input of the pipeline changed since {args.base}: nothing to train")
    # The workflow's next steps read the answer (GitHub's step outputs file).
    if output := os.environ.get("GITHUB_OUTPUT"):
        with open(output, "a") as file:
            file.write(f"pipeline={'true' if found else 'false'}\n")


if __name__ == "__main__":
    cli.run(main)
