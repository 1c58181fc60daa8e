"""Own-data tier (slow): tables the project does not ship go through the README's "Your own data"
commands, changing only data.target: schema, train, bento, one served prediction, make predict."""

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import post, run
from test_serving import start, stop

pytestmark = pytest.mark.slow

# Each table is written by the project's own environment (scikit-learn, pandas), seeded.
WINE = """
from sklearn.datasets import load_wine
load_wine(as_frame=True).frame.to_csv("build/table.csv", index=False)
"""
# Customers: an identifier, a signup date, text categories, a boolean, integer codes, a constant,
# missing values; the churn follows several columns at once, none of them alone.
CUSTOMERS = """
import numpy as np
import pandas as pd
rng = np.random.default_rng(11)
n = 300
plan = rng.choice(["basic", "plus", "pro"], n)
autopay = rng.random(n) < 0.5
calls = rng.integers(0, 6, n)
tenure = rng.gamma(2.0, 10.0, n)
z = (
    2.5 * (plan == "basic") - 2.5 * (plan == "pro") - 3.0 * autopay + 1.2 * (calls - 2.5)
    - 0.1 * (tenure - 20) + 1.0 + rng.normal(0, 0.3, n)
)
table = pd.DataFrame({
    "customer_id": [f"C{i:05d}" for i in range(n)],
    "signup": pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"),
    "plan": plan,
    "autopay": autopay,
    "support_calls": calls,
    "tenure_months": tenure.round(1),
    "region": rng.choice(["north", "south", "east", "west"], n),
    "country": "fr",
    "churned": np.where(z > 0, "yes", "no"),
})
table.loc[rng.random(n) < 0.08, "tenure_months"] = np.nan
table.loc[rng.random(n) < 0.1, "region"] = None
table.to_csv("build/table.csv", index=False, date_format="%Y-%m-%d")
"""

TABLES = {
    # table: (the code writing it, its target, what make schema must decide for it)
    "wine": (WINE, "target", {"categorical": [], "drop": []}),
    "customers": (
        CUSTOMERS,
        "churned",
        {
            "categorical": ["plan", "autopay", "support_calls", "region"],
            "drop": ["customer_id", "signup", "country"],
        },
    ),
}


@pytest.fixture
def copied(project: Path, tmp_path: Path) -> Path:
    """A copy of the session's installed project, its environment included, free to change."""
    own = tmp_path / project.name
    # The outputs of earlier runs stay behind; the environment's own folders of those names come.
    outputs = {"build", "reports", "models"}
    shutil.copytree(
        project,
        own,
        symlinks=True,
        ignore=lambda folder, names: outputs & set(names) if Path(folder) == project else set(),
    )
    return own


@pytest.mark.parametrize("table", list(TABLES))
def test_a_table_of_ones_own_needs_only_its_target(copied: Path, table: str) -> None:
    code, target, expected = TABLES[table]
    (copied / "build").mkdir()
    run(["uv", "run", "--locked", "python", "-c", code], copied)
    run(["make", "refresh", "SOURCE=build/table.csv"], copied)
    params = copied / "params.yaml"
    # The one edit a user makes: the target's line, comment and all else untouched.
    params.write_text(
        re.sub(r"(?m)^  target: diagnosis", f"  target: {target}", params.read_text())
    )

    decided = run(["make", "schema"], copied).stdout
    for role, columns in expected.items():
        assert re.search(rf"(?m)^  {role}: \[{', '.join(columns)}\] ", params.read_text()), role
        for column in columns:
            assert re.search(rf"(?m)^{column} +{'drop' if role == 'drop' else role} ", decided)
    if table == "customers":
        assert re.search(r"(?m)^signup +drop +date", decided)
        assert re.search(r"(?m)^tenure_months +numeric", decided)

    run(["make", "train"], copied)
    metrics = json.loads((copied / "reports/metrics.json").read_text())
    gate = json.loads((copied / "reports/gate.json").read_text())
    assert gate["passed"], gate
    classes = {"wine": {"0", "1", "2"}, "customers": {"no", "yes"}}[table]
    assert set(metrics["per_class"]) == classes
    support = {name: c["support"] for name, c in metrics["per_class"].items()}
    assert support[metrics["positive_class"]] == min(support.values())  # the rarest class
    # Sliced by the categorical feature with the fewest values; wine has none.
    assert metrics["slice_column"] == {"wine": None, "customers": "autopay"}[table]
    card = (copied / "reports/model_card.md").read_text()
    assert f"curves of `{metrics['positive_class']}` (chosen: the rarest class)" in card

    run(["make", "bento"], copied)
    server, url = start(["make", "serve", "PORT={port}"], copied, copied / "build/serve.log")
    try:
        status, answer = post(url, (copied / "build/example.json").read_bytes())
    finally:
        stop(server)
    assert status == 200, answer
    assert answer["predictions"][0]["label"] in classes  # type: ignore[index]

    run(["make", "predict", "INPUT=data/split/test.parquet", "OUTPUT=build/out.csv"], copied)
    lines = (copied / "build/out.csv").read_text().splitlines()
    assert lines[0].endswith(
        ",".join(["prediction", *(f"probability_{c}" for c in sorted(classes))])
    )
    assert len(lines) - 1 == sum(support.values())
