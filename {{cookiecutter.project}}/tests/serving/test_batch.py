"""The scheduled batch's command against a local folder: predictions beside the table."""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumor_classifier import NAME
from tumor_classifier.data import read_table, write_table
from tumor_classifier.serving import batch, bundle

from conftest import ROOT, Stored


def run(stored: Stored, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "tumor_classifier.serving.batch",
        *args,
    ]
    return subprocess.run(command, cwd=ROOT, env=stored.env, capture_output=True, text=True)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_predictions_land_beside_the_table_with_the_model_version(
    stored: Stored, tmp_path: Path, suffix: str
) -> None:
    table = tmp_path / f"night{suffix}"
    rows = stored.test.drop(columns="churned")
    write_table(rows, table)
    result = run(stored, str(table))
    assert result.returncode == 0, result.stderr
    loaded = bundle.load(
        next((stored.folder / "bentoml/models" / NAME).glob("*/serve.json")).parent
    )
    out = tmp_path / f"night.predictions-{loaded.version}{suffix}"
    assert result.stdout.startswith(f"wrote {len(rows)} predictions to {out}")
    written = read_table(out)
    assert written["prediction"].dtype == object  # text in every format, never a pandas category
    assert set(written["model_version"].astype(str)) == {loaded.version}
    columns = {f.name: rows[f.name].to_numpy() for f in loaded.features}
    expected = loaded.predictor.proba(columns)
    np.testing.assert_allclose(written["probability_yes"], expected[:, 1], atol=1e-6)
    assert list(written["prediction"]) == loaded.predictor.labels(expected)


def test_keep_others_writes_only_what_the_model_does_not_read(
    stored: Stored, tmp_path: Path
) -> None:
    table = tmp_path / "night.csv"
    stored.test.drop(columns="churned").to_csv(table, index=False)
    result = run(stored, str(table), "--keep", "others")
    assert result.returncode == 0, result.stderr
    (out,) = tmp_path.glob("night.predictions-*.csv")
    answers = ["prediction", "probability_no", "probability_yes", "model_version"]
    assert list(pd.read_csv(out).columns) == ["customer_id", *answers]
    # An id is written as read: text, its leading zeros kept.
    rows = stored.test.drop(columns="churned").assign(
        customer_id=lambda t: [f"{i:05d}" for i in range(len(t))]
    )
    rows.to_csv(table, index=False)
    assert run(stored, str(table), "--keep", "others").returncode == 0
    assert pd.read_csv(out, dtype=str)["customer_id"].tolist() == rows["customer_id"].tolist()


def test_a_table_breaking_the_contract_is_one_line_and_writes_nothing(
    stored: Stored, tmp_path: Path
) -> None:
    stored.test.drop(columns=["churned", "spend"]).to_csv(tmp_path / "night.csv", index=False)
    result = run(stored, str(tmp_path / "night.csv"))
    assert (result.returncode, result.stderr) == (1, "batch: input lacks columns: spend\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["night.csv"]
    missing = run(stored, str(tmp_path / "none.csv"))
    assert missing.stderr == f"batch: {tmp_path / 'none.csv'}: no such table\n"
    assert run(stored, "").stderr == "batch: no table: give its URL, or set BATCH_TABLE\n"


def test_the_range_policy_is_the_services(stored: Stored, flagged: Stored, tmp_path: Path) -> None:
    """refuse (the shipped policy) names the row outside its range and writes nothing; flag answers
    it and names its features, as `make predict` and the service do."""
    rows = stored.test.drop(columns="churned").reset_index(drop=True)
    rows.loc[2, "tenure"] = 1e6
    rows.to_csv(tmp_path / "night.csv", index=False)
    result = run(stored, str(tmp_path / "night.csv"))
    assert result.returncode == 1
    assert result.stderr.startswith(
        "batch: input breaks the contract: row 3: tenure=1000000.0 is above"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["night.csv"]
    wine = flagged.test.drop(columns="cultivar").reset_index(drop=True)
    wine.loc[2, "alcohol"] = 1e6
    wine.to_csv(tmp_path / "wine.csv", index=False)
    result = run(flagged, str(tmp_path / "wine.csv"))
    assert result.returncode == 0, result.stderr
    (out,) = tmp_path.glob("wine.predictions-*.csv")
    flags = pd.read_csv(out, keep_default_na=False)["out_of_range"]
    assert flags[2] == "alcohol"
    assert set(flags.drop(index=2)) == {""}


def test_the_image_reads_the_model_packed_in_the_bento(
    stored: Stored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Bento's models/ folder is a model store of its own; the image works in the Bento.
    shutil.copytree(stored.folder / "bentoml/models", tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    version = (tmp_path / "models" / NAME / "latest").read_text().strip()
    assert bundle.folder() == Path("models", NAME, version)


def test_output_sits_beside_the_table_in_any_storage() -> None:
    assert (
        batch.output_of("s3://bucket/in/night.csv", "abc")
        == "s3://bucket/in/night.predictions-abc.csv"
    )
    assert batch.fsspec_url("azure://dvc/t.csv") == "az://dvc/t.csv"
