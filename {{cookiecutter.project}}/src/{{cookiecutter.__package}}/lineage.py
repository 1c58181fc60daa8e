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
