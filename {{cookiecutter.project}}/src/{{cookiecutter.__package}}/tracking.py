"""MLflow set-up: the team server in MLFLOW_TRACKING_URI, or a SQLite file in the project."""

import os
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException

from . import NAME as NAME  # re-exported: the experiment and the registered model
from .cli import UserError


def project_root(cwd: Path) -> Path:
    """The project folder, also from inside the temporary copy of a queued `dvc exp run`."""
    for parent in [cwd, *cwd.parents]:
        if (
            parent.name == "exps"
            and parent.parent.name == "tmp"
            and parent.parent.parent.name == ".dvc"
        ):
            return parent.parent.parent.parent
    return cwd


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else an absolute SQLite URI shared by all runs here."""
    return (
        os.environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{project_root(Path.cwd()) / 'mlflow.db'}"
    )


def start() -> None:
    """Point MLflow at the store and the experiment; one line when it is unusable."""
    # Fail fast instead of retrying for minutes when a server is down or the URI is wrong.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", NAME))
    except (MlflowException, OSError) as error:
        reason = str(error).splitlines()[0][:200]
        refused = isinstance(error, MlflowException) and error.get_http_status_code() in (401, 403)
        fix = (
            "set MLFLOW_TRACKING_TOKEN to <user>:<password> of a user of that server"
            if refused
            else "fix MLFLOW_TRACKING_URI or unset it to track in mlflow.db"
        )
        raise UserError(f"MLflow tracking store {uri} is unusable ({reason}); {fix}") from None


def find_model(model_md5: str) -> str | None:
    """The URI of the newest logged model with this file hash (training tags it)."""
    models = mlflow.search_logged_models(
        filter_string=f"tags.model_md5 = '{model_md5}'", max_results=1, output_format="list"
    )
    return f"models:/{models[0].model_id}" if models else None


def find_run(model_md5: str) -> str | None:
    """The newest run that logged the model with this hash (training tags it)."""
    runs = mlflow.search_runs(
        filter_string=f"tags.model_md5 = '{model_md5}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None
