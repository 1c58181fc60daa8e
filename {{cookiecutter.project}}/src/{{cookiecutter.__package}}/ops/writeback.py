"""`make deploy`: the release's one commit: IMAGE into an overlay on the newest main, pushed.

Merges land while a release builds, so the commit is made on the newest main, not on the commit
that was built; a push that loses a race with another merge is rejected, and the whole step is
retried from a fresh fetch a few times. When the overlay already runs the image (a re-run of a
finished release), nothing is committed. Git's own author variables name the committer, and a
token in PUSH_TOKEN authenticates to GitHub without ever appearing on a command line.
"""

import argparse
import base64
import os
import subprocess
import time
from pathlib import Path

from .. import cli
from .manifests import manifests
from .overlays import OVERLAYS, set_image

# A push refused because the branch moved (GitHub says "fetch first" or "non-fast-forward");
# anything else, such as a ruleset refusing the pusher, will not get better by retrying.
MOVED = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref")


def git(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if token := env.pop("PUSH_TOKEN", ""):
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env |= {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.https://github.com/.extraheader",
            "GIT_CONFIG_VALUE_0": f"AUTHORIZATION: basic {basic}",
        }
    return subprocess.run(["git", *args], capture_output=True, text=True, env=env)


def must(*args: str) -> str:
    done = git(*args)
    if done.returncode != 0:
        raise cli.UserError(f"git {args[0]} failed: {' '.join(done.stderr.split())[:300]}")
    return done.stdout


def write_back(env: str, image: str, remote: str, branch: str, attempts: int, wait: float) -> str:
    """Commit the image to the newest branch and push it; what happened, in one line."""
    if must("status", "--porcelain", "--untracked-files=no").strip():
        raise cli.UserError(
            "the work tree has uncommitted changes, and `make deploy` checks out the newest "
            f"{remote}/{branch}: commit or stash them first"
        )
    for attempt in range(1, attempts + 1):
        must("fetch", "--quiet", remote, branch)
        must("checkout", "--quiet", "--detach", "FETCH_HEAD")
        changed = set_image(OVERLAYS, env, image)
        if not changed:
            return f"{branch} already deploys {image} to {env}: nothing to commit"
        manifests(Path())
        must("add", *(str(path) for path in changed))
        must("commit", "--quiet", "--message", f"deploy({env}): {image.rpartition('@')[2]}")
        pushed = git("push", "--quiet", remote, f"HEAD:refs/heads/{branch}")
        if pushed.returncode == 0:
            return f"pushed deploy({env}) to {branch}: {image}"
        reason = " ".join(pushed.stderr.split())
        if not any(sign in reason for sign in MOVED):
            raise cli.UserError(f"the push to {branch} was refused: {reason[:300]}")
        print(f"{branch} moved during the release (attempt {attempt} of {attempts}): again")
        time.sleep(wait * attempt)
    raise cli.UserError(
        f"{branch} kept moving: {attempts} pushes lost the race; re-run the release's deploy job"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="writeback", description=__doc__)
    parser.add_argument("env", metavar="ENV")
    parser.add_argument("image", metavar="IMAGE", help="<repository>@sha256:<digest>")
    parser.add_argument("--remote", default="origin")
    parser.add_argument("--branch", default="main")
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--wait", type=float, default=3.0, help="seconds; grows with each attempt")
    args = parser.parse_args(argv)
    print(write_back(args.env, args.image, args.remote, args.branch, args.attempts, args.wait))


if __name__ == "__main__":
    cli.run(main)
