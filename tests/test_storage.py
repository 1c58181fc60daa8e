"""Storage tier (slow): the nightly batch of a baked project reads the DVC remote it was baked for.

The CronJob runs `make batch`'s command in the image, whose Python environment holds the project's
runtime dependencies only: here, that environment alone (uv sync --no-default-groups), without the
pipeline's DVC and its drivers. One cloud kind is baked (the render tier checks that each kind's
pyproject.toml names its own driver and no other): its URL passes the storage check (and stops at
the missing model, since none was trained); each other kind fails in one line that names the fsspec
driver it needs; so does a Parquet table, whose reader (pyarrow) the image leaves out.
"""

import configparser
from pathlib import Path

import pytest
from conftest import bake_into, run

pytestmark = pytest.mark.slow

BAKED = "s3"
# A table under each kind of DVC remote URL, and the fsspec driver that reads it.
TABLES = {
    "s3": ("s3://acme-dvc/churn/night.csv", "s3fs"),
    "gs": ("gs://acme-dvc/churn/night.csv", "gcsfs"),
    "azure": ("azure://dvc/churn/night.csv", "adlfs"),
}


def remote_url(project: Path) -> str:
    config = configparser.ConfigParser()
    config.read(project / ".dvc/config")
    return config[f"'remote \"{config['core']['remote']}\"'"]["url"]


def test_the_batch_command_reads_only_the_remote_kind_it_was_baked_for(tmp_path: Path) -> None:
    project = bake_into(tmp_path, lock=True, dvc_remote=BAKED)
    runtime = tmp_path / "runtime"
    sync = ["uv", "sync", "--locked", "--no-default-groups", "--no-install-project", "--quiet"]
    run(sync, project, env={"UV_PROJECT_ENVIRONMENT": str(runtime)})
    env = {"PYTHONPATH": "src", "BENTOML_HOME": str(tmp_path / "bentoml")}
    assert remote_url(project).startswith("s3://")
    for kind, (table, driver) in TABLES.items():
        command = [str(runtime / "bin/python"), "-m", "tumor_classifier.serving.batch", table]
        result = run(command, project, check=False, env=env)
        assert result.returncode == 1
        if kind == BAKED:
            line = "no model tumor_classifier in BentoML's store: run `make bento`"
        else:
            protocol = "az" if kind == "azure" else kind
            line = (
                f"{table}: reading {protocol}:// needs {driver}, which is not installed: "
                f"add it to the dependencies in pyproject.toml (uv add {driver})"
            )
        assert result.stderr == f"batch: {line}\n", kind
    # The baked kind's table as Parquet: refused before the model, where the CSV reached it.
    table = TABLES[BAKED][0].removesuffix(".csv") + ".parquet"
    command = [str(runtime / "bin/python"), "-m", "tumor_classifier.serving.batch", table]
    result = run(command, project, check=False, env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"batch: {table}: reading Parquet needs pyarrow, which is not installed: add it to the "
        "dependencies in pyproject.toml (uv add pyarrow), or give a CSV or JSON lines table\n"
    )
