"""Charts tier: the report's Mermaid charts parse with Mermaid itself, as GitHub draws them.

GitHub renders ```mermaid blocks in comments with Mermaid.js; a chart that Mermaid cannot parse
shows as an error box. The generated charts module is plain Python, imported here from the
template; Mermaid comes from npm at test time, with jsdom for the browser it expects.
"""

import hashlib
import importlib.util
import json
import subprocess
from collections.abc import Callable
from types import ModuleType

import pytest
from conftest import TEMPLATE, run

PACKAGES = ("mermaid@11.17.2", "jsdom@29.1.1")
PARSE = """
import { readFileSync } from "node:fs";
import { JSDOM } from "jsdom";
const { window } = new JSDOM("");
globalThis.window = window;
globalThis.document = window.document;
const { default: mermaid } = await import("mermaid");
const results = [];
for (const chart of JSON.parse(readFileSync(0, "utf8"))) {
  try {
    results.push((await mermaid.parse(chart)).diagramType);
  } catch (error) {
    results.push(`error: ${error.message.split("\\n")[0]}`);
  }
}
console.log(JSON.stringify(results));
"""


@pytest.fixture(scope="module")
def charts() -> ModuleType:
    path = TEMPLATE / "{{cookiecutter.project}}/src/{{cookiecutter.__package}}/ops/charts.py"
    spec = importlib.util.spec_from_file_location("charts", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def parse(request: pytest.FixtureRequest) -> Callable[[list[str]], list[str]]:
    """Each chart's diagram type as Mermaid parses it, or its parse error."""
    digest = hashlib.sha256(" ".join(PACKAGES).encode()).hexdigest()[:12]
    folder = request.config.cache.mkdir(f"mermaid-{digest}")
    if not (folder / "node_modules/.installed").is_file():
        (folder / "package.json").write_text('{"private": true, "type": "module"}\n')
        run(
            ["npm", "install", "--no-audit", "--no-fund", "--no-package-lock", *PACKAGES],
            folder,
            600,
        )
        (folder / "node_modules/.installed").write_text("\n".join(PACKAGES))
    (folder / "parse.mjs").write_text(PARSE)

    def parse(blocks: list[str]) -> list[str]:
        bodies = [block.removeprefix("```mermaid\n").removesuffix("```\n") for block in blocks]
        result = subprocess.run(
            ["node", "parse.mjs"],
            cwd=folder,
            input=json.dumps(bodies),
            capture_output=True,
            text=True,
            check=True,
        )
        parsed: list[str] = json.loads(result.stdout)
        return parsed

    return parse


def test_every_chart_of_a_report_parses(charts: ModuleType, parse: Callable) -> None:
    roc = [(0.0, 0.0), (0.02, 0.7), (0.1, 0.95), (1.0, 1.0)]
    pr = [(0.0, 1.0), (0.8, 0.97), (1.0, 0.4)]
    metrics = {"accuracy": 0.96, "f1": 0.95, "roc_auc": 0.99, "log_loss": 0.11}
    drawn = charts.drawings(
        metrics,
        {**metrics, "accuracy": 0.97},
        {"roc": roc, "precision_recall": pr},
        {"roc": roc[1:], "precision_recall": pr},
        'origin/main "stable"',
    )
    first = charts.drawings({}, metrics, {}, {"roc": roc}, "main")
    assert len(drawn) == 3
    assert parse(drawn + first) == ["xychart"] * 5


def test_a_broken_chart_is_refused(charts: ModuleType, parse: Callable) -> None:
    chart = charts.metrics({"accuracy": 0.9}, {"accuracy": 0.95}, "main")
    assert parse([chart.replace("bar [", "bar ")])[0].startswith("error: Parse error")
