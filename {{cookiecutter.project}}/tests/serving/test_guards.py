"""The guard in process: what it answers for the service, and when it keeps the connection."""

import asyncio
import json
import logging
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from tumor_classifier.serving.guards import FAULT, Guard, Message

LIMIT = 1000


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


def answer(body: bytes) -> bytes:
    """A stand-in for the service's answer: a contract, and a fault for a negative n."""
    n = Body.model_validate_json(body).n
    if n < 0:
        raise RuntimeError("the model broke")
    return json.dumps({"n": n}).encode()


async def bentoml_path(*_: Any) -> None:
    raise AssertionError("the guard handed POST /predict to BentoML")


def guarded(
    chunks: list[bytes], length: int | None = None
) -> tuple[int, dict[bytes, bytes], Any, int]:
    """The guard's answer to a body sent in these chunks: status, headers, JSON, chunks unread."""
    messages: list[Message] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
    asyncio.run(Guard(bentoml_path, ["/predict"], answer, LIMIT, 2.0)(scope, receive, send))
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"]), len(messages)


def test_a_body_is_answered_by_the_service_not_bentoml() -> None:
    status, headers, answered, _ = guarded([b'{"n": ', b"1}"])
    assert (status, answered) == (200, {"n": 1})
    assert headers[b"content-type"] == b"application/json"
    assert b"connection" not in headers


def test_a_broken_contract_is_a_400_naming_each_problem_without_the_values() -> None:
    status, headers, answered, _ = guarded([b'{"n": "secret", "m": 1}'])
    assert status == 400
    assert answered["error"] == "2 validation errors for Body"
    assert [(e["loc"], e["type"]) for e in answered["detail"]] == [
        (["n"], "int_parsing"),
        (["m"], "extra_forbidden"),
    ]
    assert "secret" not in json.dumps(answered)
    assert b"connection" not in headers


def test_a_fault_is_a_500_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status, _, answered, _ = guarded([b'{"n": -1}'])
    assert (status, answered) == (500, {"error": FAULT})
    assert "the model broke" in caplog.text


@pytest.mark.parametrize("length", [None, 3 * LIMIT])
def test_a_body_over_the_limit_is_read_to_its_end_then_refused_keeping_the_connection(
    length: int | None,
) -> None:
    status, headers, answered, unread = guarded([b" " * LIMIT] * 3, length)
    assert (status, answered) == (413, {"error": f"body over {LIMIT} bytes"})
    assert (unread, headers.get(b"connection")) == (0, None)


@pytest.mark.parametrize("length", [None, 100 * LIMIT])
def test_a_body_far_over_the_limit_is_refused_closing_the_connection(length: int | None) -> None:
    status, headers, _, unread = guarded([b" " * LIMIT] * 100, length)
    assert status == 413
    assert headers[b"connection"] == b"close"
    assert unread > 0  # not read to its end
