"""The service over real HTTP: valid requests, a named 4xx for each hostile one, slow clients,
the contract it publishes, its metrics, and the out-of-range policy."""

import base64
import contextlib
import gzip
import hashlib
import http.client
import json
import math
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import numpy as np
import pandas as pd
import pytest

from tumor_classifier import contract
from tumor_classifier.params import Params, load
from tumor_classifier.serving.predict import Predictor, predict_frame

from conftest import Served

JSON = {"content-type": "application/json"}


def call(
    url: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One request (POST when there is a body) with exactly these headers: status, headers and
    the answer, parsed when it is JSON."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        # The service may answer (a 413) before it takes the whole body: then read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request("GET" if body is None else "POST", path, body, headers or {})
        response = connection.getresponse()
        data = response.read()
        head = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    try:
        return response.status, head, json.loads(data)
    except ValueError:
        return response.status, head, data.decode(errors="replace")


def post(url: str, body: bytes, headers: dict[str, str] = JSON) -> tuple[int, Any]:
    status, _, answer = call(url, "/predict", body, headers)
    return status, answer


def raw(url: str, data: bytes, trickle: bytes = b"", seconds: float = 10) -> tuple[float, bytes]:
    """Bytes on a loopback socket, then more a byte every 0.2 s: how long until the service
    closed the connection, and all it answered."""
    parts = urlsplit(url)
    answer, start = b"", time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=seconds) as s:
        try:
            s.sendall(data)
            for byte in trickle:
                time.sleep(0.2)
                s.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: what it answered is read below
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return time.monotonic() - start, answer


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


@pytest.fixture(scope="module")
def params(served: Served) -> Params:
    return load(served.folder / "params.yaml")


@pytest.fixture(scope="module")
def features(served: Served, params: Params) -> dict[str, contract.Feature]:
    schema = (served.folder / "schema.yaml").read_text()
    return {f.name: f for f in contract.from_schema(schema, params.data)}


def body(**changes: Any) -> bytes:
    return json.dumps(changes).encode()


def metrics(url: str) -> dict[str, float]:
    _, _, text = call(url, "/metrics")
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_health_endpoints(served: Served) -> None:
    for path in ("/livez", "/readyz"):
        assert call(served.url, path)[0] == 200


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
    assert prediction["out_of_range"] == []


def test_the_answer_is_the_document_it_publishes(served: Served, record: dict[str, Any]) -> None:
    """The service writes its answer's JSON itself, without building the documented models: the
    answer must stay what /docs.json says a 200 is."""
    _, _, spec = call(served.url, "/docs.json")
    ok = spec["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator({**ok["schema"], "components": spec["components"]})
    status, answer = post(served.url, body(records=[record, record]))
    assert status == 200
    assert list(validator.iter_errors(answer)) == []
    # And the check can fail: the answers it must refuse.
    (prediction, _) = answer["predictions"]
    for broken in (
        {"predictions": answer["predictions"]},
        {**answer, "predictions": [{**prediction, "label": 1}]},
        {**answer, "predictions": [{**prediction, "probabilities": {"yes": "0.5"}}]},
        {**answer, "predictions": [{k: v for k, v in prediction.items() if k != "label"}]},
    ):
        assert list(validator.iter_errors(broken)) != [], broken


@pytest.mark.score("Mon3")
def test_a_batch_equals_batch_inference_on_the_same_rows(served: Served, params: Params) -> None:
    rows = served.test.head(50)
    status, answer = post(served.url, body(records=records(rows)))
    assert status == 200
    features = contract.from_schema((served.folder / "schema.yaml").read_text(), params.data)
    offline = predict_frame(
        Predictor(features, served.folder / "model.joblib", served.folder / "onnx/model.onnx"), rows
    )
    assert [x["label"] for x in answer["predictions"]] == offline["prediction"].tolist()
    online = [x["probabilities"]["yes"] for x in answer["predictions"]]
    np.testing.assert_allclose(online, offline["probability_yes"], atol=1e-6)


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json; charset=utf-8"},
        {"content-type": "Application/JSON"},
        {"content-type": "application/json", "content-encoding": "identity"},
    ],
)
def test_json_is_accepted_whatever_the_spelling_of_its_media_type(
    served: Served, record: dict[str, Any], headers: dict[str, str]
) -> None:
    assert post(served.url, body(records=[record]), headers)[0] == 200


def test_nulls_are_accepted_where_the_schema_allows_them(
    served: Served, record: dict[str, Any]
) -> None:
    status, _ = post(served.url, body(records=[{**record, "tenure": None, "region": None}]))
    assert status == 200


def test_the_bounds_of_a_range_are_inside_it(
    served: Served, record: dict[str, Any], features: dict[str, contract.Feature]
) -> None:
    spend = features["spend"]
    for value in (spend.low, spend.high, 0.0, -0.0, 5e-324):
        assert post(served.url, body(records=[{**record, "spend": value}]))[0] == 200, value


def test_concurrent_requests_all_succeed_alike(served: Served, record: dict[str, Any]) -> None:
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: post(served.url, body(records=[record])), range(64)))
    assert {status for status, _ in answers} == {200}
    assert len({json.dumps(answer, sort_keys=True) for _, answer in answers}) == 1


@dataclass(frozen=True)
class Hostile:
    name: str
    body: bytes
    status: int
    text: str  # the answer must contain it
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)


def hostile_requests(
    record: dict[str, Any], features: dict[str, contract.Feature], max_records: int, max_body: int
) -> list[Hostile]:
    """Requests a hostile or careless client sends, each with the status and the words of the
    answer it must get."""
    one = json.dumps({"records": [record]})
    field = json.dumps(record["spend"])
    spend = features["spend"]

    def changed(**values: Any) -> bytes:
        return body(records=[{**record, **values}])

    def literal(text: str) -> bytes:
        """The record with spend written as this JSON text."""
        return one.replace(f'"spend": {field}', f'"spend": {text}').encode()

    def without(key: str) -> bytes:
        return body(records=[{k: v for k, v in record.items() if k != key}])

    def typed(content_type: str | None) -> tuple[tuple[str, str], ...]:
        return () if content_type is None else (("content-type", content_type),)

    pairs = ", ".join(f'"{k}": {json.dumps(v)}' for k, v in record.items())
    below, above = spend.outside("below"), spend.outside("above")
    return [
        # Fields and types.
        Hostile("missing field", without("spend"), 400, "spend"),
        Hostile("missing categorical", without("plan"), 400, "plan"),
        Hostile("unknown field", changed(discount=0.1), 400, "discount"),
        Hostile(
            "field name in other case",
            body(records=[{**{k: v for k, v in record.items() if k != "spend"}, "Spend": 1.0}]),
            400,
            "Spend",
        ),
        Hostile("field name of 100 kB", changed(**{"x" * 100_000: 1}), 400, "Extra inputs"),
        Hostile("number as text", changed(spend="12.5"), 400, "spend"),
        Hostile("NaN as text", changed(spend="NaN"), 400, "spend"),
        Hostile("number as boolean", changed(spend=True), 400, "spend"),
        Hostile("number as list", changed(spend=[1.0]), 400, "spend"),
        Hostile("number as object", changed(spend={"value": 1}), 400, "spend"),
        Hostile("null where not nullable", changed(spend=None), 400, "spend"),
        Hostile("unseen category", changed(plan="enterprise"), 400, "basic"),
        Hostile("category as number", changed(plan=3), 400, "plan"),
        Hostile("category in other case", changed(plan="Basic"), 400, "plan"),
        Hostile("empty category", changed(plan=""), 400, "plan"),
        # Numbers at the limits, and literals JSON does not have.
        Hostile("NaN", literal("NaN"), 400, "finite"),
        Hostile("Infinity", literal("Infinity"), 400, "finite"),
        Hostile("-Infinity", literal("-Infinity"), 400, "finite"),
        Hostile("overflowing number", literal("1e400"), 400, "finite"),
        Hostile("integer of 400 digits", literal("1" + "0" * 400), 400, "spend"),
        Hostile("number beyond 32-bit floats", literal("1e39"), 400, above),
        Hostile("largest double", literal("1.7976931348623157e308"), 400, above),
        Hostile("lowest double", literal("-1.7976931348623157e308"), 400, below),
        Hostile("largest 32-bit float", literal(f"{contract.LARGEST!r}"), 400, above),
        Hostile("below the range", changed(spend=spend.bounds[0] - 1), 400, below),
        Hostile("above the range", changed(spend=spend.bounds[1] * 10), 400, above),
        Hostile("number as hex", literal("0x10"), 400, "JSON"),
        Hostile("leading plus sign", literal("+1"), 400, "JSON"),
        # Duplicate keys: JSON parsers keep the last one silently.
        Hostile(
            "duplicate field",
            ('{"records": [{' + pairs + ', "spend": 1.0}]}').encode(),
            400,
            'duplicate key \\"spend\\"',
        ),
        Hostile(
            "duplicate records key",
            ('{"records": [], "records": [{' + pairs + "}]}").encode(),
            400,
            'duplicate key \\"records\\"',
        ),
        # The shape of the body.
        Hostile("empty batch", body(records=[]), 400, "at least 1"),
        Hostile(
            "batch over the limit",
            body(records=[record] * (max_records + 1)),
            400,
            f"at most {max_records}",
        ),
        Hostile("record not an object", body(records=[1]), 400, "records"),
        Hostile("record is null", body(records=[None]), 400, "records"),
        Hostile("records not a list", body(records=record), 400, "records"),
        Hostile("records as text", body(records="all"), 400, "records"),
        Hostile("nested list", body(records=[[record]]), 400, "records"),
        Hostile("record in an object", body(records=[{"record": record}]), 400, "record"),
        Hostile("nesting 10,000 deep", b"[" * 10_000 + b"]" * 10_000, 400, "recursion"),
        Hostile("no records key", body(rows=[record]), 400, "records"),
        Hostile("unknown key beside records", body(records=[record], limit=5), 400, "limit"),
        Hostile("empty object", b"{}", 400, "records"),
        Hostile("top-level list", json.dumps([record]).encode(), 400, "object"),
        Hostile("top-level number", b"42", 400, "object"),
        Hostile("not JSON", b"plan=basic&spend=1", 400, "JSON"),
        Hostile("truncated JSON", one[:-5].encode(), 400, "JSON"),
        Hostile("two JSON documents", (one + one).encode(), 400, "trailing characters"),
        Hostile("empty body", b"", 400, "records"),
        # Encodings.
        Hostile("UTF-16 body", one.encode("utf-16"), 400, "JSON"),
        Hostile("byte order mark", b"\xef\xbb\xbf" + one.encode(), 400, "JSON"),
        Hostile("invalid UTF-8", changed(plan="x").replace(b'"x"', b'"\xff\xfe"'), 400, "JSON"),
        Hostile("lone surrogate", changed(plan="x").replace(b'"x"', b'"\\ud800"'), 400, "JSON"),
        Hostile(
            "gzip body",
            gzip.compress(one.encode()),
            400,
            "JSON",
            (("content-type", "application/json"), ("content-encoding", "gzip")),
        ),
        # Content types: only JSON is parsed.
        Hostile("no content type", one.encode(), 415, "application/json", typed(None)),
        Hostile("text/plain", one.encode(), 415, "application/json", typed("text/plain")),
        Hostile(
            "form",
            b"records=1",
            415,
            "application/json",
            typed("application/x-www-form-urlencoded"),
        ),
        Hostile(
            "multipart",
            b'--b\r\nContent-Disposition: form-data; name="records"\r\n\r\n[]\r\n--b--\r\n',
            415,
            "multipart/form-data",
            typed("multipart/form-data; boundary=b"),
        ),
        Hostile("XML", b"<records/>", 415, "application/xml", typed("application/xml")),
        Hostile(
            "JSON look-alike", one.encode(), 415, "application/json", typed("application/jsonx")
        ),
        # Sizes.
        Hostile(
            "body over the limit", b'{"records": [' + b" " * max_body + b"]}", 413, "body over"
        ),
    ]


def raw_requests(max_body: int, timeout: float) -> list[tuple[str, bytes, bytes, int, str]]:
    """(name, bytes sent at once, bytes then sent one by one, status, text): what only a socket
    can send. Each is answered, and the connection closed, within the read timeout."""
    head = b"POST /predict HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\n"
    chunk = b"4000\r\n" + b" " * 0x4000 + b"\r\n"
    late = f"within {timeout:g} s"
    short = b'content-length: 100\r\n\r\n{"rec'
    return [
        ("body shorter than its length", head + short, b"", 408, late),
        ("chunked body that never ends",
         head + b'transfer-encoding: chunked\r\n\r\n5\r\n{"rec\r\n', b"", 408, late),
        ("body trickling in",
         head + b"content-length: 40\r\n\r\n", b'{"records": [' * 3, 408, late),
        ("headers trickling in", b"", head + b"x-slow: " + b"a" * 40, 408, late),
        ("connection without a request", b"", b"", 408, late),
        ("headers over 32 kB", b"GET /livez HTTP/1.1\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n",
         b"", 431, "headers over"),
        ("length over the limit, body never sent",
         head + f"content-length: {max_body + 1}\r\n\r\n".encode(), b"", 413, "body over"),
        ("chunked body over the limit",
         head + b"transfer-encoding: chunked\r\n\r\n" + chunk * (max_body // 0x4000 + 2), b"",
         413, "body over"),
        ("malformed chunk", head + b"transfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n", b"", 400,
         "Invalid HTTP"),
        ("not HTTP", b"hello there\r\n\r\n", b"", 400, "Invalid HTTP"),
    ]  # fmt: skip


@pytest.mark.score("Mon2")
def test_hostile_requests_get_a_4xx_that_says_what_is_wrong(
    served: Served, record: dict[str, Any], features: dict[str, contract.Feature], params: Params
) -> None:
    cases = hostile_requests(
        record, features, params.serve.max_records, params.serve.max_body_bytes
    )
    sockets = raw_requests(params.serve.max_body_bytes, params.serve.read_timeout)
    assert len(cases) + len(sockets) >= 40
    assert len({c.name for c in cases} | {name for name, *_ in sockets}) == len(cases) + len(
        sockets
    )
    failures = []
    for case in cases:
        status, answer = post(served.url, case.body, dict(case.headers))
        if status != case.status or case.text not in json.dumps(answer):
            failures.append(f"{case.name}: {status} {json.dumps(answer)[:300]}")
    with ThreadPoolExecutor(len(sockets)) as pool:  # each waits out the read timeout
        answers = pool.map(lambda case: raw(served.url, case[1], case[2]), sockets)
        for (name, _, _, status, text), (seconds, answer) in zip(sockets, answers, strict=True):
            head, _, rest = answer.partition(b"\r\n")
            if head.split(b" ")[1:2] != [str(status).encode()] or text not in rest.decode():
                failures.append(f"{name}: {answer[:300]!r}")
            if seconds > params.serve.read_timeout + 5:
                failures.append(f"{name}: held the connection {seconds:.1f} s")
    assert failures == []
    # And then it answers as before.
    assert post(served.url, body(records=[record]))[0] == 200
    # A client's mistake is one line in the server's log, without a traceback or the values sent.
    log = (served.folder / "serve.log").read_text()
    assert "refused /predict: records.0.spend: float_type" in log
    assert "refused /predict: records.0.spend: out_of_range" in log
    assert "refused /predict: body_timeout" in log
    assert "refused a connection: header_timeout" in log
    assert "Traceback" not in log
    assert "WARNING" not in log
    assert "input_value" not in log
    assert "x" * 100 not in log  # a long field name is cut short
    # Each is counted by reason, none as a server error.
    counted = metrics(served.url)
    for reason in (
        "out_of_range", "duplicate_key", "json_invalid", "unsupported_media_type",
        "body_too_large", "body_timeout", "header_timeout", "headers_too_large", "invalid_http",
    ):  # fmt: skip
        assert counted['model_rejected_requests_total{reason="' + reason + '"}'] >= 1, reason
    errors = [k for k in counted if re.search(r'http_response_code="5\d\d"', k) and counted[k]]
    assert errors == []


def test_a_body_over_the_limit_is_read_to_its_end_and_the_connection_kept(
    served: Served, record: dict[str, Any], params: Params
) -> None:
    """A client still sending its body reads the 413, not a reset connection, and goes on."""
    limit = params.serve.max_body_bytes
    parts = urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        for name, oversized in (
            ("with its length", b'{"records": [' + b" " * (3 * limit) + b"]}"),
            ("chunked", iter([b" " * 65536] * (3 * limit // 65536))),
        ):
            connection.request("POST", "/predict", oversized, JSON)
            response = connection.getresponse()
            assert (response.status, response.getheader("connection")) == (413, None), name
            assert json.loads(response.read()) == {"error": f"body over {limit} bytes"}, name
            connection.request("POST", "/predict", body(records=[record]), JSON)
            response = connection.getresponse()
            assert response.status == 200, name
            response.read()
    finally:
        connection.close()
    # A body announced far past the limit is not read: its 413 closes the connection at once.
    head = "POST /predict HTTP/1.1\r\nHost: test\r\ncontent-type: application/json\r\n"
    head += f"content-length: {100 * limit}\r\n\r\n"
    seconds, answer = raw(served.url, head.encode())
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()
    assert seconds < params.serve.read_timeout


def test_every_refusal_is_documented_with_the_body_it_has(
    served: Served, record: dict[str, Any], features: dict[str, contract.Feature], params: Params
) -> None:
    p = params
    _, _, spec = call(served.url, "/docs.json")
    operation = spec["paths"]["/predict"]["post"]
    schemas = spec["components"]["schemas"]
    assert operation["requestBody"]["required"] is True
    checked = set()
    for case in hostile_requests(record, features, p.serve.max_records, p.serve.max_body_bytes):
        status, answer = post(served.url, case.body, dict(case.headers))
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{case.name}: {status} is not in the OpenAPI document"
        ref = documented["content"]["application/json"]["schema"]["$ref"]
        schema = schemas[ref.rsplit("/", 1)[1]]
        assert set(schema["required"]) <= set(answer), case.name
        assert isinstance(answer["error"], str)
        if "detail" in schema["properties"]:
            item = schema["properties"]["detail"]["items"]
            assert all(set(item["required"]) <= set(error) for error in answer["detail"])
        checked.add(str(status))
    assert checked == {"400", "413", "415"}


def test_the_document_describes_the_service_not_its_readme(served: Served) -> None:
    _, _, spec = call(served.url, "/docs.json")
    assert (
        spec["info"]["description"]
        == "Class probabilities for records that meet the training schema."
    )
    assert "BentoML" not in json.dumps(spec["info"])
    spend = spec["components"]["schemas"]["Record"]["properties"]["spend"]
    assert {"minimum", "maximum"} <= set(spend)  # the range it refuses


def test_the_docs_page_loads_nothing_from_other_sites(served: Served) -> None:
    status, headers, page = call(served.url, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    assert "googletagmanager" not in page
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(links) >= 2
    for link in links:
        assert not re.match(r"[a-z]+:|//", link), link  # relative: this service serves it
        assert call(served.url, "/" + link.removeprefix("./"))[0] == 200, link
    # The one inline script is the one the policy allows by its hash.
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    allowed = re.findall(r"'sha256-([^']+)'", headers["content-security-policy"])
    digests = [base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in scripts]
    assert digests == allowed


def test_other_methods_and_paths_are_4xx(served: Served) -> None:
    for method, path, expected in (("GET", "/predict", 405), ("POST", "/nope", 404)):
        parts = urlsplit(served.url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        connection.request(method, path, b"{}" if method == "POST" else None, JSON)
        assert connection.getresponse().status == expected
        connection.close()


def test_random_paths_add_no_metric_series(served: Served) -> None:
    call(served.url, "/warm-up")  # the first unknown path opens the shared series
    before = metrics(served.url)
    paths = [f"/{uuid.uuid4().hex}/../{uuid.uuid4().hex}" for _ in range(200)]
    with ThreadPoolExecutor(8) as pool:
        statuses = set(pool.map(lambda path: call(served.url, path)[0], paths))
    assert statuses == {404}
    after = metrics(served.url)
    assert len(after) - len(before) <= 2  # the worker that had not yet seen one
    assert not any(path.split("/")[1] in key for key in after for path in paths[:20])
    others = [
        k
        for k in after
        if 'endpoint="other"' in k and k.startswith("bentoml_service_request_total")
    ]
    assert sum(after[k] for k in others) >= 200


def test_metrics_count_predictions_rejections_and_name_the_model(
    served: Served, record: dict[str, Any]
) -> None:
    post(served.url, body(records=[record, record]))
    post(served.url, body(records=[{**record, "plan": "enterprise"}]))
    samples = metrics(served.url)
    predicted = sum(v for k, v in samples.items() if k.startswith("model_predictions_total{"))
    assert predicted >= 2
    assert samples['model_rejected_requests_total{reason="literal_error"}'] >= 1
    assert any(k.startswith("model_info{") and 'backend="onnxruntime"' in k for k in samples)
    assert any(k.startswith("bentoml_service_request_duration_seconds_bucket{") for k in samples)
    assert samples["model_prediction_score_count"] >= 2


def wine_record(served: Served) -> dict[str, Any]:
    row: dict[str, Any] = json.loads(
        served.test.drop(columns="cultivar").head(1).to_json(orient="records")
    )[0]
    return row


def test_flag_answers_out_of_range_records_naming_their_features(flagging: Served) -> None:
    record = wine_record(flagging)
    features = {
        f.name: f
        for f in contract.from_schema(
            (flagging.folder / "schema.yaml").read_text(),
            load(flagging.folder / "params.yaml").data,
        )
    }
    far = {
        **record,
        "alcohol": features["alcohol"].bounds[1] + 5,
        "magnesium": features["magnesium"].bounds[0] - 1,
    }
    before = metrics(flagging.url).get('model_out_of_range_values_total{feature="alcohol"}', 0)
    status, answer = post(flagging.url, body(records=[record, far]))
    assert status == 200
    inside, outside = answer["predictions"]
    assert inside["out_of_range"] == []
    assert outside["out_of_range"] == ["alcohol", "magnesium"]
    assert math.isclose(sum(outside["probabilities"].values()), 1, rel_tol=1e-5)
    after = metrics(flagging.url)['model_out_of_range_values_total{feature="alcohol"}']
    assert after == before + 1


def test_a_record_without_a_finite_answer_is_refused_and_counted(flagging: Served) -> None:
    record = wine_record(flagging)
    extreme = {**record, "alcohol": contract.LARGEST}  # inside the contract, overflows in float32
    status, answer = post(flagging.url, body(records=[record, extreme]))
    assert status == 400
    (error,) = answer["detail"]
    assert error["type"] == "non_finite_prediction"
    assert error["loc"] == ["records", 1]
    assert "no finite probability" in error["msg"]
    assert (
        metrics(flagging.url)['model_rejected_requests_total{reason="non_finite_prediction"}'] >= 1
    )
    assert "NaN" not in json.dumps(answer)
    assert post(flagging.url, body(records=[record]))[0] == 200


def test_a_regression_answers_one_number_per_record_and_documents_it(regressing: Served) -> None:
    rows = regressing.test.head(20)
    sent = json.loads(rows.drop(columns="progression").to_json(orient="records"))
    status, answer = post(regressing.url, body(records=sent))
    assert status == 200
    assert len(answer["model_version"]) == 12
    assert [set(p) for p in answer["predictions"]] == [{"prediction", "out_of_range"}] * len(rows)
    predicted = np.array([p["prediction"] for p in answer["predictions"]])
    assert np.isfinite(predicted).all()
    assert predicted.std() > 0
    # The answers are the model's, not noise: they beat the mean of the training targets.
    error, spread = np.abs(predicted - rows["progression"]), np.abs(rows["progression"] - 150)
    assert error.mean() < spread.mean()
    _, _, spec = call(regressing.url, "/docs.json")
    schemas = spec["components"]["schemas"]
    assert "Prediction" not in schemas  # the classifier's answer
    estimate = schemas["Estimate"]["properties"]
    assert set(estimate) == {"prediction", "out_of_range"}
    assert estimate["prediction"]["type"] == "number"
    assert "Class" not in spec["info"]["description"]
    samples = metrics(regressing.url)
    assert samples["model_prediction_value_count"] >= len(rows)
    assert not any(k.startswith("model_predictions_total{") for k in samples)
