"""The package's layout: which wing may import which, what each stage's deps must list, and that
every params.yaml key has a reader. Each rule is computed from the code, never listed by hand."""

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

import tumor_classifier
from tumor_classifier.params import Params

from conftest import ROOT

SRC = Path(tumor_classifier.__file__).parent
PACKAGE = SRC.name
# Who may import whom: shared modules (the package's top level) import no wing; the pipeline and
# the service never import each other, so the Bento can ship the service without the pipeline.
ALLOWED = {
    "shared": {"shared"},
    "pipeline": {"shared", "pipeline"},
    "serving": {"shared", "serving"},
    "ops": {"shared", "pipeline", "serving", "ops"},
}


def wing(module: str) -> str:
    """shared, or the wing of a module given as its path below the package (`pipeline/train.py`)."""
    parts = Path(module).parts
    return parts[0] if len(parts) > 1 else "shared"


def imports(src: Path, module: str) -> set[str]:
    """The package's modules (as paths below src) that a module imports, anywhere in its code."""
    here = Path(module).parent
    found = set()
    for node in ast.walk(ast.parse((src / module).read_text())):
        if isinstance(node, ast.Import):
            names: list[tuple[str, str | None]] = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's subpackage
                base = here.parents[node.level - 2] if node.level > 1 else here
                prefix = ".".join([PACKAGE, *base.parts])
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            names = [(target, alias.name) for alias in node.names]
        else:
            continue
        for target, name in names:
            parts = target.split(".")
            if parts[0] != PACKAGE:
                continue
            folder = Path(*parts[1:])
            # `from package import cli` names a module; `from package import NAME`, its __init__.
            candidates = [folder / f"{name}.py"] if name else []
            candidates += [folder.with_suffix(".py")] if parts[1:] else []
            for candidate in [*candidates, folder / "__init__.py"]:
                if (src / candidate).is_file() and candidate != Path(module):
                    found.add(candidate.as_posix())
                    break
    return found


def graph(src: Path) -> dict[str, set[str]]:
    modules = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.py"))
    return {module: imports(src, module) for module in modules}


def wrong_arrows(edges: Mapping[str, Iterable[str]]) -> list[str]:
    """Each import the wing rules forbid, as `importer -> imported`."""
    return [
        f"{source} -> {target}"
        for source, targets in sorted(edges.items())
        for target in sorted(targets)
        if wing(target) not in ALLOWED[wing(source)]
    ]


def closure(edges: Mapping[str, set[str]], start: str) -> set[str]:
    """A module and every package module it imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += edges.get(module, set())
    return seen


def deps_problems(pipeline: dict[str, Any], edges: Mapping[str, set[str]]) -> list[str]:
    """For each stage: package modules its entry point imports but deps omit, and the reverse."""
    problems = []
    for stage, spec in pipeline["stages"].items():
        entry = spec["cmd"].split()[2]  # python -m <module> ...
        module = Path(*entry.split(".")[1:]).with_suffix(".py").as_posix()
        needed = {f"src/{PACKAGE}/{m}" for m in closure(edges, module)}
        listed = {dep for dep in spec["deps"] if dep.startswith(f"src/{PACKAGE}/")}
        problems += [f"{stage}: deps lack {dep}" for dep in sorted(needed - listed)]
        problems += [
            f"{stage}: deps list {dep}, which it does not import" for dep in sorted(listed - needed)
        ]
    return problems


def unread_params(sources: Iterable[str]) -> list[str]:
    """params.yaml keys (fields of the Params model) that no code names as an attribute or key."""
    named: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Attribute):
                named.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.add(node.value)

    def fields(model: type, prefix: str) -> Iterable[str]:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            key = field.alias or name
            nested = field.annotation
            if isinstance(nested, type) and hasattr(nested, "model_fields"):
                yield from fields(nested, f"{prefix}{key}.")
            elif name not in named and key not in named:
                yield f"{prefix}{key}"

    return list(fields(Params, ""))


def test_wings_import_only_what_they_may() -> None:
    edges = graph(SRC)
    assert {wing(module) for module in edges} == set(ALLOWED)
    assert wrong_arrows(edges) == []


def test_a_wrong_arrow_is_named(tmp_path: Path) -> None:
    src = tmp_path / PACKAGE
    for module, text in {
        "__init__.py": "",
        "data.py": "from .pipeline import split\n",
        "pipeline/__init__.py": "",
        "pipeline/split.py": "from .. import data\n",
        "pipeline/export.py": f"from {PACKAGE}.serving.predict import text\n",
        "serving/__init__.py": "",
        "serving/predict.py": "def text(): ...\n",
        "ops/__init__.py": "",
        "ops/drift.py": "from ..serving import predict\nfrom ..pipeline.split import x\n",
    }.items():
        (src / module).parent.mkdir(parents=True, exist_ok=True)
        (src / module).write_text(text)
    assert wrong_arrows(graph(src)) == [
        "data.py -> pipeline/split.py",
        "pipeline/export.py -> serving/predict.py",
    ]


def test_each_stage_lists_the_modules_it_imports_as_deps() -> None:
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    assert deps_problems(pipeline, graph(SRC)) == []


def test_a_missing_or_stale_dep_is_named() -> None:
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    spec = pipeline["stages"]["split"]
    spec["deps"] = [dep for dep in spec["deps"] if not dep.endswith("/data.py")]
    spec["deps"].append(f"src/{PACKAGE}/render.py")
    assert deps_problems(pipeline, graph(SRC)) == [
        f"split: deps lack src/{PACKAGE}/data.py",
        f"split: deps list src/{PACKAGE}/render.py, which it does not import",
    ]


def test_every_params_key_has_a_reader() -> None:
    sources = [p.read_text() for p in SRC.rglob("*.py") if p.name != "params.py"]
    assert unread_params(sources) == []


@pytest.mark.parametrize("key", ["range_margin", "max_missing_share"])
def test_an_unread_params_key_is_named(key: str) -> None:
    sources = [p.read_text() for p in SRC.rglob("*.py") if p.name != "params.py"]
    hidden = [source.replace(key, "renamed") for source in sources]
    assert key in " ".join(unread_params(hidden))


def readme_modules(readme: str) -> dict[str, set[str]]:
    """The README's layout table: each wing's folder and the modules it names."""
    table = readme.split("## Where the code lives")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `src/[^/]+/(\w*)/?` \| (.*?) \|", table, flags=re.MULTILINE)
    return {folder or "shared": set(re.findall(r"`(\w+\.py)`", holds)) for folder, holds in rows}


def test_the_readme_names_every_module_of_every_wing() -> None:
    shown = readme_modules((ROOT / "README.md").read_text())
    actual: dict[str, set[str]] = {}
    for module in graph(SRC):
        if Path(module).name != "__init__.py":
            actual.setdefault(wing(module), set()).add(Path(module).name)
    assert shown == actual


def test_a_module_missing_from_the_readme_is_seen() -> None:
    readme = (ROOT / "README.md").read_text().replace(", `guards.py` (", " (")
    assert "guards.py" not in readme_modules(readme)["serving"]
