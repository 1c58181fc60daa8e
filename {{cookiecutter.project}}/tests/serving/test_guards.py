"""The guard in process: what it answers for the service, and when it keeps the connection; the
request deadline; and where both sit in the app BentoML builds."""

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import pytest
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from pydantic import BaseModel, ConfigDict

from tumor_classifier.serving.guards import (
    FAULT,
    Deadline,
    Guard,
    Message,
    Scope,
)

from conftest import ROOT, Stored

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


def timed(middleware: Any, app: Any, timeout: float, requests: int = 1) -> tuple[list[Any], int]:
    """What the request timeout sends for these requests to app, and the timers left armed on the
    event loop after the answers."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> int:
        timed_app = middleware(app, timeout)
        for _ in range(requests):
            await timed_app({"type": "http", "path": "/predict"}, receive, send)
        scheduled = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
        return sum(not timer.cancelled() for timer in scheduled)

    armed = asyncio.run(run())
    return sent, armed


async def answering(scope: Scope, receive: Any, send: Any, pause: float = 0) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await asyncio.sleep(pause)
    await send({"type": "http.response.body", "body": b"{}"})


def test_a_request_not_answered_in_time_is_a_504() -> None:
    async def stuck(scope: Scope, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)

    (start, body), _ = timed(Deadline, stuck, 0.05)
    assert start["status"] == 504
    assert json.loads(body["body"]) == {"error": "Not able to process the request in 0.05 seconds"}


def test_an_answer_started_in_time_is_not_cut_short() -> None:
    async def slow_body(scope: Scope, receive: Any, send: Any) -> None:
        await answering(scope, receive, send, pause=0.1)

    (start, body), _ = timed(Deadline, slow_body, 0.05)
    assert (start["status"], body["body"]) == (200, b"{}")


def test_the_apps_own_timeout_is_not_taken_for_the_deadline() -> None:
    async def failing(scope: Scope, receive: Any, send: Any) -> None:
        raise TimeoutError("the app's own")

    with pytest.raises(TimeoutError, match="the app's own"):
        timed(Deadline, failing, 10)


@pytest.mark.parametrize(("middleware", "left"), [(Deadline, 0), (TimeoutMiddleware, 50)])
def test_no_timer_outlives_its_answer(middleware: Any, left: int) -> None:
    """BentoML's own TimeoutMiddleware, which Deadline replaces, leaves one per request."""
    sent, armed = timed(middleware, answering, 10, requests=50)
    assert [m["type"] for m in sent[:2]] == ["http.response.start", "http.response.body"]
    assert armed == left


# Prints the middlewares of the app BentoML builds for the service, outermost first.
MIDDLEWARES = """
from tumor_classifier.serving import service
print(*(m.cls.__name__ for m in service.SERVICE.to_asgi().user_middleware))
"""


def test_the_service_app_has_the_deadline_in_place_of_bentomls_timeout(stored: Stored) -> None:
    """The app BentoML builds: its request metrics (with bounded labels) and tracing outside, the
    request deadline where BentoML's TimeoutMiddleware would be, the guard inside them all."""
    result = subprocess.run(
        [sys.executable, "-c", MIDDLEWARES], cwd=ROOT, env=stored.env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert result.stdout.splitlines()[-1].split() == [
        "BoundedTrafficMetrics",
        "OpenTelemetryMiddleware",
        "Deadline",
        "Guard",
        "ContextMiddleware",
    ]
