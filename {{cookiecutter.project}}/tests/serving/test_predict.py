"""Batch inference: the service's prediction code over files, with either backend."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumor_classifier import contract
from tumor_classifier.cli import UserError
from tumor_classifier.data import write_table
from tumor_classifier.params import load
from tumor_classifier.serving import predict

from conftest import Served, write_params


@pytest.fixture(scope="module")
def predictors(served: Served) -> tuple[predict.Predictor, predict.Predictor]:
    p = load(served.folder / "params.yaml")
    features = contract.from_schema((served.folder / "schema.yaml").read_text(), p.data)
    model = served.folder / "model.joblib"
    return (
        predict.Predictor(features, model, served.folder / "onnx/model.onnx"),
        predict.Predictor(features, model, None),
    )


def test_onnx_and_scikit_learn_backends_agree(
    served: Served, predictors: tuple[predict.Predictor, predict.Predictor]
) -> None:
    fast, exact = predictors
    assert (fast.backend, exact.backend) == ("onnxruntime", "scikit-learn")
    columns = {f.name: served.test[f.name].to_numpy() for f in fast.features}
    np.testing.assert_allclose(fast.proba(columns), exact.proba(columns), atol=1e-5)


# Run in a process of its own: whether making a Predictor imported scikit-learn, and its classes.
LOADS = """
import sys
from pathlib import Path
from tumor_classifier import contract
from tumor_classifier.params import load
from tumor_classifier.serving.predict import Predictor
folder = Path(sys.argv[1])
data = load(folder / "params.yaml").data
features = contract.from_schema((folder / "schema.yaml").read_text(), data)
onnx = folder / "onnx/model.onnx" if sys.argv[2] == "onnx" else None
predictor = Predictor(features, folder / "model.joblib", onnx)
print("sklearn" in sys.modules, predictor.classes)
"""


def test_with_onnx_scikit_learn_is_never_loaded(served: Served) -> None:
    """Importing and unpickling scikit-learn costs seconds of every start: the ONNX export holds
    the classes and columns, so ONNX Runtime serves alone."""
    loaded = {
        backend: subprocess.run(
            [sys.executable, "-c", LOADS, str(served.folder), backend],
            capture_output=True, text=True, check=True,
        ).stdout.split(maxsplit=1)
        for backend in ("onnx", "scikit-learn")
    }  # fmt: skip
    assert loaded["onnx"] == ["False", "['no', 'yes']\n"]
    assert loaded["scikit-learn"] == ["True", "['no', 'yes']\n"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_main_reads_and_writes_each_format(served: Served, workdir: Path, suffix: str) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    rows = served.test.drop(columns="churned")
    source = workdir / f"in{suffix}"
    write_table(rows, source)
    predict.main(
        [
            str(source),
            f"out{suffix}",
            "--model",
            str(served.folder / "model.joblib"),
            "--onnx",
            str(served.folder / "onnx/model.onnx"),
            "--schema",
            str(served.folder / "schema.yaml"),
        ]
    )
    out = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }[suffix](f"out{suffix}")
    assert len(out) == len(rows)
    assert set(out["prediction"]) <= {"yes", "no"}
    assert out["prediction"].dtype == object  # text in every format, never a pandas category
    np.testing.assert_allclose(out["probability_yes"] + out["probability_no"], 1, atol=1e-5)


def test_input_breaking_the_contract_is_one_line(served: Served, workdir: Path) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    served.test.drop(columns=["churned", "spend"]).to_csv("in.csv", index=False)
    # Named before the model is looked for: there is none in this folder.
    with pytest.raises(UserError, match="input lacks columns: spend"):
        predict.main(["in.csv", "out.csv", "--schema", str(served.folder / "schema.yaml")])
    served.test.drop(columns="churned").to_csv("in.csv", index=False)
    with pytest.raises(UserError, match=r"models/model\.joblib: no model there; run `make train`"):
        predict.main(["in.csv", "out.csv", "--schema", str(served.folder / "schema.yaml")])


def given(served: Served) -> list[str]:
    """The arguments that point main at the served model."""
    folder = served.folder
    return ["--model", str(folder / "model.joblib"), "--onnx", str(folder / "onnx/model.onnx"),
            "--schema", str(folder / "schema.yaml")]  # fmt: skip


def test_a_refused_file_names_its_first_broken_rows_across_chunks(
    served: Served, workdir: Path
) -> None:
    p = load(served.folder / "params.yaml")
    write_params(workdir, p)
    features = {
        f.name: f for f in contract.from_schema((served.folder / "schema.yaml").read_text(), p.data)
    }
    rows = pd.concat([served.test.drop(columns="churned")] * 10, ignore_index=True)
    rows.loc[[13, 250], "spend"] = features["spend"].bounds[1] * 2  # two chunks of 100 apart
    rows["plan"] = rows["plan"].astype(object)
    rows.loc[101, "plan"] = "gold"
    write_table(rows, workdir / "in.csv")
    with pytest.raises(UserError) as raised:
        predict.main(["in.csv", "out.csv", "--chunk-rows", "100", *given(served)])
    message = str(raised.value)
    # The first chunk that breaks the contract stops the run: its rows, numbered in the file.
    assert message.startswith("input breaks the contract: row 14: spend=")
    assert f"is {features['spend'].outside('above')}" in message
    assert "row 102" not in message  # in the next chunk, never read
    assert not (workdir / "out.csv").exists()  # and nothing half-written
    rows.loc[[13, 250], "spend"] = features["spend"].high
    write_table(rows, workdir / "in.csv")
    with pytest.raises(UserError, match="row 102: plan='gold' is a category unseen in training"):
        predict.main(["in.csv", "out.csv", "--chunk-rows", "100", *given(served)])
    assert not (workdir / "out.csv").exists()


def test_chunks_predict_as_the_whole_file(served: Served, workdir: Path) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    rows = pd.concat([served.test.drop(columns="churned")] * 3, ignore_index=True)
    write_table(rows, workdir / "in.parquet")
    predict.main(["in.parquet", "whole.parquet", *given(served)])
    predict.main(["in.parquet", "chunked.parquet", "--chunk-rows", "7", *given(served)])
    pd.testing.assert_frame_equal(
        pd.read_parquet("chunked.parquet"), pd.read_parquet("whole.parquet")
    )
    assert len(pd.read_parquet("whole.parquet")) == len(rows)


def test_the_output_keeps_the_input_columns_or_those_the_model_does_not_read(
    served: Served, workdir: Path
) -> None:
    """By default every input column is written beside the predictions; with --keep others, the
    columns the model does not read (the id, the label), in the input's order, the same values."""
    write_params(workdir, load(served.folder / "params.yaml"))
    rows = served.test.head(20)
    write_table(rows, workdir / "in.parquet")
    answers = ["prediction", "probability_no", "probability_yes"]
    predict.main(["in.parquet", "all.parquet", *given(served)])
    every = pd.read_parquet("all.parquet")
    assert list(every.columns) == [*rows.columns, *answers]
    predict.main(["in.parquet", "others.parquet", "--keep", "others", *given(served)])
    others = pd.read_parquet("others.parquet")
    assert list(others.columns) == ["customer_id", "churned", *answers]
    pd.testing.assert_frame_equal(others, every[others.columns])


def test_columns_the_model_does_not_read_keep_their_values_in_every_format(
    served: Served, workdir: Path
) -> None:
    """Written as read, across chunks: an id keeps its leading zeros from CSV and JSON lines, a
    column empty in the first chunks and filled later keeps one type, and a date from Parquet is a
    date in JSON lines (ISO 8601)."""
    write_params(workdir, load(served.folder / "params.yaml"))
    rows = served.test.drop(columns=["churned", "customer_id"]).head(30).reset_index(drop=True)
    rows.insert(0, "id", [f"{i:03d}" for i in range(len(rows))])
    rows["note"] = [None] * 20 + ["checked"] * 10
    answers = ["prediction", "probability_no", "probability_yes"]
    chunked = ["--keep", "others", "--chunk-rows", "10", *given(served)]
    rows.to_csv("in.csv", index=False)
    predict.main(["in.csv", "out.parquet", *chunked])
    out = pd.read_parquet("out.parquet")
    assert list(out.columns) == ["id", "note", *answers]
    assert out["id"].tolist() == rows["id"].tolist()
    assert out["note"].tolist() == rows["note"].tolist()
    rows.to_json("in.jsonl", orient="records", lines=True)
    predict.main(["in.jsonl", "out.jsonl", *chunked])
    written = [json.loads(line) for line in Path("out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in written] == rows["id"].tolist()
    assert [r["note"] for r in written] == rows["note"].tolist()
    rows["visit"] = pd.Series(pd.to_datetime(["2024-01-01"] * len(rows))).astype("datetime64[ms]")
    write_table(rows, workdir / "in.parquet")
    predict.main(["in.parquet", "dated.jsonl", *chunked])
    written = [json.loads(line) for line in Path("dated.jsonl").read_text().splitlines()]
    assert {r["visit"] for r in written} == {"2024-01-01T00:00:00.000"}


def test_flag_writes_each_rows_features_out_of_range(served: Served, workdir: Path) -> None:
    p = load(served.folder / "params.yaml")
    write_params(
        workdir, p.model_copy(update={"serve": p.serve.model_copy(update={"out_of_range": "flag"})})
    )
    features = {
        f.name: f for f in contract.from_schema((served.folder / "schema.yaml").read_text(), p.data)
    }
    rows = served.test.drop(columns="churned").dropna().head(3).reset_index(drop=True)
    rows.loc[1, "spend"] = features["spend"].bounds[0] - 1
    rows.loc[2, ["spend", "tenure"]] = [
        features["spend"].bounds[1] + 1,
        features["tenure"].bounds[1] + 1,
    ]
    write_table(rows, workdir / "in.csv")
    predict.main(["in.csv", "out.csv", *given(served)])
    out = pd.read_csv("out.csv", keep_default_na=False)
    assert out["out_of_range"].tolist() == ["", "spend", "tenure,spend"]
    np.testing.assert_allclose(out["probability_yes"] + out["probability_no"], 1, atol=1e-5)


def test_unknown_output_format(served: Served, workdir: Path) -> None:
    write_params(workdir, load(served.folder / "params.yaml"))
    served.test.drop(columns="churned").to_csv("in.csv", index=False)
    schema = ["--schema", str(served.folder / "schema.yaml")]
    with pytest.raises(UserError, match=r"out\.xlsx: unsupported format"):
        predict.main(
            ["in.csv", "out.xlsx", "--model", str(served.folder / "model.joblib"), *schema]
        )


def test_rows_without_a_finite_answer_are_named_not_written(
    flagging: Served, workdir: Path
) -> None:
    write_params(workdir, load(flagging.folder / "params.yaml"))  # serve.out_of_range: flag
    rows = flagging.test.drop(columns="cultivar").head(4).reset_index(drop=True)
    # Inside the contract, overflows in float32 (Parquet: CSV parsers round the last digit).
    rows.loc[2, "alcohol"] = contract.LARGEST
    write_table(rows, workdir / "in.parquet")
    with pytest.raises(UserError, match="the model gives no finite probability for rows 3:"):
        predict.main(["in.parquet", "out.csv", *given(flagging)])
    assert not (workdir / "out.csv").exists()
    rows.loc[2, "alcohol"] = rows.loc[1, "alcohol"]
    write_table(rows, workdir / "in.parquet")
    predict.main(["in.parquet", "out.csv", *given(flagging)])
    assert np.isfinite(pd.read_csv("out.csv").filter(like="probability_").to_numpy()).all()


def test_a_regression_predicts_a_number_by_either_backend(regressing: Served) -> None:
    p = load(regressing.folder / "params.yaml")
    features = contract.from_schema((regressing.folder / "schema.yaml").read_text(), p.data)
    model = regressing.folder / "model.joblib"
    fast = predict.Predictor(features, model, regressing.folder / "onnx/model.onnx")
    exact = predict.Predictor(features, model, None)
    assert fast.regression
    assert exact.regression
    assert fast.classes == []
    rows = regressing.test.drop(columns="progression")
    onnx, sklearn = predict.predict_frame(fast, rows), predict.predict_frame(exact, rows)
    assert list(onnx.columns) == [*rows.columns, "prediction"]  # no probabilities
    assert onnx["prediction"].dtype.kind == "f"
    difference = np.abs(onnx["prediction"] - sklearn["prediction"]).max()
    assert difference <= p.export.regression_tolerance
