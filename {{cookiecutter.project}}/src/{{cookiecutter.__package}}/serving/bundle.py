"""The model as `make bento` stored it, for the consumers outside the service (stream, batch)."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import NAME, cli, contract
from ..contract import Feature
from .predict import Predictor


@dataclass(frozen=True)
class Bundle:
    folder: Path
    features: list[Feature]
    settings: dict[str, Any]  # serve.json: the contract's options, the version, the drift window
    predictor: Predictor

    @property
    def version(self) -> str:
        return str(self.settings["model_version"])


def folder() -> Path:
    """The model's folder: in a Bento (the image's working directory) its own copy, else the newest
    in BentoML's store (a laptop, after `make bento`)."""
    bundled = Path("models", NAME, "latest")
    if bundled.is_file():
        return bundled.parent / bundled.read_text().strip()
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return Path(bentoml.models.get(f"{NAME}:latest").path)
    except NotFound:
        raise cli.UserError(f"no model {NAME} in BentoML's store: run `make bento`") from None


def load(path: Path | None = None) -> Bundle:
    path = path or folder()
    features = contract.load_text((path / "contract.json").read_text())
    settings = json.loads((path / "serve.json").read_text())
    predictor = Predictor(features, path / "model.joblib", path / "model.onnx")
    return Bundle(path, features, settings, predictor)
