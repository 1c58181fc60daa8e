"""What a model came from: file hashes and the git revision, recorded alike by the model card, the
registry and the Bento."""

import hashlib
import subprocess
from pathlib import Path


def md5(path: Path) -> str:
    """A file's MD5, the hash DVC records: how a model or a dataset is recognised everywhere."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "md5").hexdigest()


def revision() -> str:
    """The commit checked out, in full; "unknown" outside a git clone."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def committed(revision: str, path: Path) -> str | None:
    """A file as committed at a revision (or at origin/revision: a CI clone has no local branch);
    None outside a git clone, or where the revision or the file is missing."""
    for name in (revision, f"origin/{revision}"):
        shown = subprocess.run(
            ["git", "show", f"{name}:./{path.as_posix()}"], capture_output=True, text=True
        )
        if shown.returncode == 0:
            return shown.stdout
    return None
