"""Reject invalid answers before anything is written, one line per answer."""

import json
import keyword
import re
import sys

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
GITHUB_OWNER = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}")
PYTHON_VERSIONS = ("3.11", "3.12", "3.13")
DVC_REMOTES = ("local", "s3", "gs", "azure")
# Import names of the project's own dependencies: a package called like one would shadow it.
TAKEN = {"bentoml", "dvc", "mlflow", "numpy", "pandas", "pandera", "sklearn", "tests"}


def problems(answers: dict[str, str]) -> list[str]:
    """Return one message per invalid answer, naming the answer and the rule it breaks."""
    found = []
    for key in ("name", "description", "author"):
        value = answers[key]
        if not value.strip() or any(c in value for c in '"\\') or not value.isprintable():
            found.append(
                f"{key}={value!r}: must be one non-empty line without double quotes or backslashes"
            )
    project = answers["project"]
    if len(project) > 40 or not DNS_LABEL.fullmatch(project):
        found.append(
            f"project={project!r}: must be a DNS-1123 label of at most 40 characters "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    package = answers["__package"]
    if not package.isidentifier() or keyword.iskeyword(package) or package in TAKEN:
        found.append(
            f"package={package!r} (from project): must be a Python identifier, not a keyword "
            f"and not one of {', '.join(sorted(TAKEN))}; choose another project slug"
        )
    owner = answers["github_owner"]
    if not GITHUB_OWNER.fullmatch(owner):
        found.append(
            f"github_owner={owner!r}: must be a GitHub user or organisation name "
            "(1-39 letters, digits or single hyphens, not starting or ending with a hyphen)"
        )
    for key, allowed in (("python_version", PYTHON_VERSIONS), ("dvc_remote", DVC_REMOTES)):
        if answers[key] not in allowed:
            found.append(f"{key}={answers[key]!r}: must be one of {', '.join(allowed)}")
    return found


if __name__ == "__main__":
    errors = problems(ANSWERS)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    sys.exit(1 if errors else 0)
