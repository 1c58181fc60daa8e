"""Register the DVC-tracked model in MLflow with its lineage; point an alias at that version."""

import argparse
from pathlib import Path

import joblib
import mlflow
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion

from .. import cli, tracking
from ..lineage import md5, revision
from ..metrics import read_metrics


def lineage(model: Path, data_dvc: Path, metrics: Path) -> dict[str, str]:
    """What produced this model: git revision, data and model hashes, and its test metrics."""
    data_md5 = yaml.safe_load(data_dvc.read_text())["outs"][0]["md5"]
    tags = {"git_revision": revision(), "data_md5": data_md5, "model_md5": md5(model)}
    tags.update({f"metric.{k}": f"{v:.6g}" for k, v in read_metrics(metrics).scores().items()})
    return tags


def versions_of(client: MlflowClient, model_md5: str) -> list[ModelVersion]:
    """The registered versions of exactly this model file, oldest first."""
    found = client.search_model_versions(
        f"name = '{tracking.NAME}' and tags.model_md5 = '{model_md5}'"
    )
    return sorted(found, key=lambda version: int(version.version))


def version_of(client: MlflowClient, model_md5: str) -> ModelVersion | None:
    """The registered version of exactly this model file, if there is one."""
    found = versions_of(client, model_md5)
    return found[0] if found else None


def keep_oldest(client: MlflowClient, mine: ModelVersion, model_md5: str) -> ModelVersion:
    """One version per model file, even when two clients registered it at once: the oldest stays."""
    oldest = versions_of(client, model_md5)[0]
    if str(oldest.version) != str(mine.version):
        client.delete_model_version(tracking.NAME, mine.version)
    return oldest


def register(model: Path, tags: dict[str, str], alias: str, image: str | None) -> ModelVersion:
    """Register the model once (by its hash), note the image serving it, move the alias to it."""
    tracking.start()
    client = MlflowClient()
    version = version_of(client, tags["model_md5"])
    if version is None:
        uri = tracking.find_model(tags["model_md5"])
        if uri is None:
            # Trained elsewhere (CI, another clone): log it to this tracking store first.
            with mlflow.start_run(run_name="register"):
                mlflow.set_tags({"model_md5": tags["model_md5"]})
                uri = mlflow.sklearn.log_model(
                    joblib.load(model),
                    name="model",
                    tags={"model_md5": tags["model_md5"]},
                    skops_trusted_types=["numpy.dtype"],
                ).model_uri
        mine = mlflow.register_model(uri, tracking.NAME, tags=tags)
        # The registry numbers versions in order; a client that lost the race deletes its own.
        version = keep_oldest(client, mine, tags["model_md5"])
    if image:
        client.set_model_version_tag(tracking.NAME, version.version, "image", image)
    client.set_registered_model_alias(tracking.NAME, alias, version.version)
    return version


def move_alias(alias: str, image: str) -> ModelVersion:
    """Point the alias at the version an image serves: how a promotion is recorded."""
    tracking.start()
    client = MlflowClient()
    found = client.search_model_versions(f"name = '{tracking.NAME}' and tags.image = '{image}'")
    if not found:
        raise cli.UserError(
            f"no version of {tracking.NAME} is tagged with image {image}: was it released?"
        )
    client.set_registered_model_alias(tracking.NAME, alias, found[0].version)
    return found[0]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="register", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    model = commands.add_parser("model", help="register the DVC-tracked model and move an alias")
    model.add_argument("model", type=Path)
    model.add_argument("data_dvc", type=Path, help="the .dvc file of the raw data")
    model.add_argument("metrics", type=Path)
    model.add_argument("--alias", default="staging")
    model.add_argument("--image", help="the image built with this model, <repository>@<digest>")
    alias = commands.add_parser("alias", help="move an alias to the version an image serves")
    alias.add_argument("--alias", required=True)
    alias.add_argument("--image", required=True)
    args = parser.parse_args(argv)
    if args.command == "alias":
        version = move_alias(args.alias, args.image)
        print(f"{tracking.NAME} version {version.version} ({args.image}) is @{args.alias}")
        return
    if not args.model.exists():
        raise cli.UserError(f"{args.model} not found: run `make train` (or `make pull`) first")
    tags = lineage(args.model, args.data_dvc, args.metrics)
    version = register(args.model, tags, args.alias, args.image)
    md5 = tags["model_md5"]
    print(f"{tracking.NAME} version {version.version} (model md5 {md5}) is @{args.alias}")


if __name__ == "__main__":
    cli.run(main)
