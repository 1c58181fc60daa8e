"""HTTP guards of the service: a body-size limit, refusals counted by reason, one log line each."""

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

REJECTED = bentoml.metrics.Counter(
    name="model_rejected_requests",
    documentation="Requests refused with a 4xx, by reason",
    labelnames=["reason"],
)


class Guard:
    """ASGI middleware: refuse bodies over the limit with 413 and count each refusal by reason.

    BentoML reads a request body whole and without a limit; this reads at most max_body_bytes.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_body_bytes: int):
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                await self.refuse(send, 413, "body_too_large", f"body over {self.limit} bytes")
                return
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 0
        errors = bytearray()

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif 400 <= status < 500:
                errors.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, watched)
        if 400 <= status < 500:
            REJECTED.labels(reason=reason(status, bytes(errors))).inc()

    async def refuse(self, send: Send, status: int, why: str, message: str) -> None:
        REJECTED.labels(reason=why).inc()
        body = json.dumps({"error": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ClientMistakes(logging.Filter):
    """BentoML logs each refused request as an ERROR with a traceback that quotes the input. A
    client's mistake is not the server's error: one line, without the values, is enough (the
    model_rejected_requests_total metric counts them by reason)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            shown = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in error.errors()[:3]
            )
        elif isinstance(error, BentoMLException) and error.error_code < 500:
            shown = type(error).__name__
        else:
            return True
        path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "refused %s: %s", (path, shown)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return True


def reason(status: int, body: bytes) -> str:
    """The first validation error's type (missing, extra_forbidden, ...), or the status."""
    try:
        return str(json.loads(body)["detail"][0]["type"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"http_{status}"
