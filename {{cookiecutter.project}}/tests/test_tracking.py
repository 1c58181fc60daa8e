"""MLflow set-up: one store per project, also for queued experiments, and a clear error."""

from pathlib import Path

import pytest

from tumor_classifier import tracking
from tumor_classifier.cli import UserError


def test_queued_experiments_track_into_the_project(tmp_path: Path) -> None:
    copy = tmp_path / "project/.dvc/tmp/exps/tmpab12/src"
    assert tracking.project_root(copy) == tmp_path / "project"
    assert tracking.project_root(tmp_path / "project") == tmp_path / "project"


def test_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.tracking_uri() == "http://mlflow.internal:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert tracking.tracking_uri() == f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def test_unreachable_server_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(
        UserError, match=r"MLflow tracking store http://127.0.0.1:9 is unusable .*unset it"
    ):
        tracking.start()
