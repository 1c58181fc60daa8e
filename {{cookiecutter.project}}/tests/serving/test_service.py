"""The service over real HTTP: valid requests, a 4xx for each kind of bad one, metrics, load."""

import json
import math
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conftest import Served
from tumor_classifier import contract
from tumor_classifier.params import load
from tumor_classifier.serving.predict import Predictor, predict_frame

MAX_RECORDS = load().serve.max_records
MAX_BODY = load().serve.max_body_bytes


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(
        f"{url}/predict", data=body, headers={"content-type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON records of the features (no target, no identifier): what a client sends."""
    rows: list[dict[str, Any]] = json.loads(
        frame.drop(columns=["churned", "customer_id"]).to_json(orient="records")
    )
    return rows


@pytest.fixture(scope="module")
def record(served: Served) -> dict[str, Any]:
    complete = served.test.dropna()
    return records(complete.head(1))[0]


def body(**changes: Any) -> bytes:
    return json.dumps(changes).encode()


def test_health_endpoints(served: Served) -> None:
    for path in ("/livez", "/readyz"):
        with urllib.request.urlopen(f"{served.url}{path}", timeout=5) as response:
            assert response.status == 200


def test_one_record_gets_a_label_probabilities_and_the_model_version(
    served: Served, record: dict[str, Any]
) -> None:
    status, answer = post(served.url, body(records=[record]))
    assert status == 200
    assert len(answer["model_version"]) == 12
    (prediction,) = answer["predictions"]
    assert prediction["label"] in {"yes", "no"}
    assert set(prediction["probabilities"]) == {"yes", "no"}
    assert math.isclose(sum(prediction["probabilities"].values()), 1, rel_tol=1e-5)


@pytest.mark.score("Mon3")
def test_a_batch_equals_batch_inference_on_the_same_rows(served: Served) -> None:
    rows = served.test.head(50)
    status, answer = post(served.url, body(records=records(rows)))
    assert status == 200
    p = load(served.folder / "params.yaml")
    features = contract.from_schema((served.folder / "schema.yaml").read_text(), p.data)
    offline = predict_frame(
        Predictor(features, served.folder / "model.joblib", served.folder / "onnx/model.onnx"), rows
    )
    assert [x["label"] for x in answer["predictions"]] == offline["prediction"].tolist()
    online = [x["probabilities"]["yes"] for x in answer["predictions"]]
    np.testing.assert_allclose(online, offline["probability_yes"], atol=1e-6)


def test_nulls_are_accepted_where_the_schema_allows_them(
    served: Served, record: dict[str, Any]
) -> None:
    status, _ = post(served.url, body(records=[{**record, "tenure": None, "region": None}]))
    assert status == 200


def test_concurrent_requests_all_succeed_alike(served: Served, record: dict[str, Any]) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(served.url, body(records=[record])), range(64)))
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(answer, sort_keys=True) for _, answer in answers}) == 1


def bad_requests(record: dict[str, Any]) -> list[tuple[str, bytes, str, int, str]]:
    """(name, body, content type, status, text the answer must contain): 30+ distinct mistakes."""
    one = json.dumps({"records": [record]})
    field = json.dumps(record["spend"])

    def changed(**values: Any) -> bytes:
        return body(records=[{**record, **values}])

    def without(key: str) -> bytes:
        return body(records=[{k: v for k, v in record.items() if k != key}])

    json_type = "application/json"
    return [
        ("missing field", without("spend"), json_type, 400, "spend"),
        ("missing categorical", without("plan"), json_type, 400, "plan"),
        ("unknown field", changed(discount=0.1), json_type, 400, "discount"),
        (
            "field name in other case",
            json.dumps(
                {"records": [{**{k: v for k, v in record.items() if k != "spend"}, "Spend": 1.0}]}
            ).encode(),
            json_type,
            400,
            "Spend",
        ),
        ("number as text", changed(spend="12.5"), json_type, 400, "spend"),
        ("number as boolean", changed(spend=True), json_type, 400, "spend"),
        ("number as list", changed(spend=[1.0]), json_type, 400, "spend"),
        ("number as object", changed(spend={"value": 1}), json_type, 400, "spend"),
        ("null where not nullable", changed(spend=None), json_type, 400, "spend"),
        (
            "NaN",
            one.replace(f'"spend": {field}', '"spend": NaN').encode(),
            json_type,
            400,
            "finite",
        ),
        (
            "Infinity",
            one.replace(f'"spend": {field}', '"spend": Infinity').encode(),
            json_type,
            400,
            "finite",
        ),
        (
            "-Infinity",
            one.replace(f'"spend": {field}', '"spend": -Infinity').encode(),
            json_type,
            400,
            "finite",
        ),
        (
            "overflowing number",
            one.replace(f'"spend": {field}', '"spend": 1e400').encode(),
            json_type,
            400,
            "finite",
        ),
        (
            "number beyond 32-bit floats",
            one.replace(f'"spend": {field}', '"spend": 1e39').encode(),
            json_type,
            400,
            "less than or equal",
        ),
        ("unseen category", changed(plan="enterprise"), json_type, 400, "basic"),
        ("category as number", changed(plan=3), json_type, 400, "plan"),
        ("category in other case", changed(plan="Basic"), json_type, 400, "plan"),
        ("empty category", changed(plan=""), json_type, 400, "plan"),
        ("empty batch", body(records=[]), json_type, 400, "at least 1"),
        (
            "batch over the limit",
            body(records=[record] * (MAX_RECORDS + 1)),
            json_type,
            400,
            f"at most {MAX_RECORDS}",
        ),
        ("record not an object", body(records=[1]), json_type, 400, "records"),
        ("record is null", body(records=[None]), json_type, 400, "records"),
        ("records not a list", body(records=record), json_type, 400, "records"),
        ("records as text", body(records="all"), json_type, 400, "records"),
        ("nested list", body(records=[[record]]), json_type, 400, "records"),
        ("no records key", body(rows=[record]), json_type, 400, "records"),
        ("unknown key beside records", body(records=[record], limit=5), json_type, 400, "limit"),
        ("empty object", b"{}", json_type, 400, "records"),
        ("top-level list", json.dumps([record]).encode(), json_type, 400, "object"),
        ("top-level number", b"42", json_type, 400, "object"),
        ("not JSON", b"plan=basic&spend=1", json_type, 400, "JSON"),
        ("truncated JSON", one[:-5].encode(), json_type, 400, "JSON"),
        ("empty body", b"", json_type, 400, "records"),
        ("XML", b"<records><plan>basic</plan></records>", "application/xml", 400, "JSON"),
        (
            "body over the limit",
            b'{"records": [' + b" " * MAX_BODY + b"]}",
            json_type,
            413,
            "body over",
        ),
    ]


@pytest.mark.score("Mon2")
def test_bad_requests_get_a_4xx_that_says_what_is_wrong(
    served: Served, record: dict[str, Any]
) -> None:
    cases = bad_requests(record)
    assert len(cases) >= 30
    failures = []
    for name, data, content_type, expected, text in cases:
        status, answer = post(served.url, data, content_type)
        if status != expected or text not in json.dumps(answer):
            failures.append(f"{name}: {status} {json.dumps(answer)[:300]}")
    assert failures == []
    # A client's mistake is one line in the server's log, without a traceback or the values sent.
    log = (served.folder / "serve.log").read_text()
    assert "refused /predict: records.0.spend: float_type" in log
    assert "Traceback" not in log
    assert "input_value" not in log


def test_other_methods_and_paths_are_4xx(served: Served) -> None:
    for method, path, expected in (("GET", "/predict", 405), ("POST", "/nope", 404)):
        request = urllib.request.Request(
            f"{served.url}{path}", data=b"{}" if method == "POST" else None, method=method
        )
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(request, timeout=5)
        assert error.value.code == expected


def test_metrics_count_predictions_rejections_and_name_the_model(
    served: Served, record: dict[str, Any]
) -> None:
    post(served.url, body(records=[record, record]))
    post(served.url, body(records=[{**record, "plan": "enterprise"}]))
    with urllib.request.urlopen(f"{served.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    predicted = sum(v for k, v in samples.items() if k.startswith("model_predictions_total{"))
    assert predicted >= 2
    assert samples['model_rejected_requests_total{reason="literal_error"}'] >= 1
    assert any(k.startswith("model_info{") and 'backend="onnxruntime"' in k for k in samples)
    assert any(k.startswith("bentoml_service_request_duration_seconds_bucket{") for k in samples)
    assert samples["model_prediction_score_count"] >= 2
