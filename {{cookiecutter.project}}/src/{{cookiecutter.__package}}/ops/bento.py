"""`make bento`: the DVC-tracked model and its contract into BentoML's store, then the Bento."""

import argparse
import hashlib
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import bentoml
import joblib
from bentoml.exceptions import NotFound

from .. import NAME, cli, contract
from ..data import read_table
from ..lineage import md5, revision
from ..params import Params, load


def save(model: Path, onnx_dir: Path, schema: Path, reference: Path, params: Params) -> bentoml.Tag:
    """Store the model with everything the service reads at start; once per distinct content."""
    model_md5 = md5(model)
    onnx = onnx_dir / "model.onnx"
    features = contract.dump(contract.from_schema(schema.read_text(), params.data))
    online = {"window": params.drift.window, "log_sample": params.drift.log_sample}
    # The service's answer follows the model: a class with probabilities, or a number.
    task = "classification" if hasattr(joblib.load(model), "classes_") else "regression"
    version = {"model_version": model_md5[:12], "task": task}
    settings = json.dumps(params.serve.model_dump() | online | version, indent=2)
    parts = [model.read_bytes(), onnx.read_bytes() if onnx.exists() else b"", features.encode()]
    parts += [reference.read_bytes(), settings.encode()]
    tag = bentoml.Tag(NAME, hashlib.sha256(b"\0".join(parts)).hexdigest()[:16])
    try:
        return bentoml.models.get(tag).tag
    except NotFound:
        pass
    metadata = {"model_md5": model_md5, "git_revision": revision()}
    with bentoml.models.create(tag, metadata=metadata, labels={"owner": NAME}) as stored:
        folder = Path(stored.path)
        shutil.copy(model, folder / "model.joblib")
        if onnx.exists():
            shutil.copy(onnx, folder / "model.onnx")
        (folder / "contract.json").write_text(features)
        shutil.copy(reference, folder / "reference.json")
        (folder / "serve.json").write_text(settings)
    return tag


def example(rows: Path, schema: Path, params: Params, out: Path) -> None:
    """A request body of one real record, for trying the service (the README's curl)."""
    features = contract.from_schema(schema.read_text(), params.data)
    row = read_table(rows, params.data)[[f.name for f in features]].head(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"records": json.loads(row.to_json(orient="records"))}) + "\n")


def build(bentofile: Path, out: Path) -> bentoml.Bento:
    """Build the Bento and export it whole (models, env/docker/Dockerfile): the image context."""
    bento = bentoml.bentos.build_bentofile(str(bentofile), build_ctx=".")
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        archive = bentoml.bentos.export_bento(bento.tag, str(Path(tmp) / "bento.tar"))
        with tarfile.open(archive) as tar:
            tar.extractall(out, filter="data")
    return bento


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bento", description=__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("onnx", type=Path, help="the export stage's folder")
    parser.add_argument("schema", type=Path)
    parser.add_argument("reference", type=Path, help="the reference stage's stats.json")
    parser.add_argument("--bentofile", type=Path, help="build the Bento too, from this file")
    parser.add_argument("--out", type=Path, default=Path("build/bento"), help="the image's context")
    parser.add_argument("--example", type=Path, help="write build/example.json from these rows")
    args = parser.parse_args(argv)
    if not args.model.exists():
        raise cli.UserError(f"{args.model} not found: run `make train` (or `dvc pull`) first")
    params = load()
    model_tag = save(args.model, args.onnx, args.schema, args.reference, params)
    print(f"stored model {model_tag}")
    if args.example:
        example(args.example, args.schema, params, Path("build/example.json"))
    if args.bentofile:
        bento = build(args.bentofile, args.out)
        print(f"built {bento.tag}; image context: {args.out}")


if __name__ == "__main__":
    cli.run(main)
