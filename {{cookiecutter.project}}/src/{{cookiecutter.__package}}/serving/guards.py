"""HTTP guards of the service: JSON bodies only, of bounded size and read time; refusals counted by
reason and logged in one line each; request metrics whose labels an unknown path cannot multiply."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

REJECTED = bentoml.metrics.Counter(
    name="model_rejected_requests",
    documentation="Requests refused with a 4xx, by reason",
    labelnames=["reason"],
)
# BentoML's own logger of failed requests (bentoml._internal.server.http_app.log_exception): its
# refusals, as ClientMistakes rewrites them, and ours read alike.
REFUSALS = logging.getLogger("bentoml._internal.server.http_app")
MEDIA_TYPE = b"application/json"
# Where the guard leaves the body it read, so that the service parses it without reading it again.
BODY = "guarded_body"


class TooLarge(Exception):
    """The body has grown past the limit."""


class Guard:
    """ASGI middleware in front of the API routes: 415 for a body that is not JSON, 413 for one
    over max_body_bytes, 408 for one that has not arrived within read_timeout seconds; every 4xx
    counted by reason.

    BentoML would read any body whole, without a limit or a deadline (its request timeout then
    answers 504, counted as a server error), and would parse multipart or form bodies it cannot
    validate (a 500). It adds this middleware inside its timeout and concurrency middlewares
    (_bentoml_impl/server/app.py, ServiceAppFactory.middlewares), so the deadline here must stay
    under the request timeout.
    """

    def __init__(
        self, app: App, routes: Collection[str], max_body_bytes: int, read_timeout: float
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.limit = max_body_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.routes:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != MEDIA_TYPE:
            shown = media[:60].decode("latin-1") or "none"
            reason = f"the body must be application/json (content-type: {shown})"
            await refuse(scope, send, 415, "unsupported_media_type", reason)
            return
        length = headers.get(b"content-length", b"")
        try:
            if length.isdigit() and int(length) > self.limit:
                raise TooLarge
            async with asyncio.timeout(self.read_timeout):
                body = await read(receive, self.limit)
        except TooLarge:
            await refuse(scope, send, 413, "body_too_large", f"body over {self.limit} bytes")
            return
        except TimeoutError:
            reason = f"the body did not arrive within {self.read_timeout:g} s"
            await refuse(scope, send, 408, "body_timeout", reason)
            return
        if body is None:  # the client left
            return
        scope[BODY] = body
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
            REJECTED.labels(reason=reason_of(status, bytes(errors))).inc()


async def read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client disconnects first."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            raise TooLarge
        more = message.get("more_body", False)
    return b"".join(chunks)


async def refuse(scope: Scope, send: Send, status: int, reason: str, message: str) -> None:
    """Answer {"error": message} and close the connection: the rest of the body is not read."""
    REJECTED.labels(reason=reason).inc()
    REFUSALS.info("refused %s: %s", scope["path"], reason)
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # uvicorn closes after the response (httptools_impl.send)
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
            shown = "; ".join(f"{where(e['loc'])}: {e['type']}" for e in error.errors()[:3])
        elif isinstance(error, BentoMLException) and error.error_code < 500:
            shown = type(error).__name__
        else:
            return True
        path = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg, record.args = "refused %s: %s", (path, shown)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return True


def where(loc: tuple[int | str, ...]) -> str:
    """records.0.spend; a client's long field name cut short, so that it cannot flood the log."""
    return ".".join(str(part)[:60] for part in loc) or "body"


def reason_of(status: int, body: bytes) -> str:
    """The first validation error's type (missing, extra_forbidden, ...), or the status."""
    try:
        return str(json.loads(body)["detail"][0]["type"])
    except (ValueError, KeyError, IndexError, TypeError):
        return f"http_{status}"


OTHER = "other"  # the endpoint label of every path the service does not serve
SYSTEM_ROUTES = ("/", "/docs.json", "/schema.json", "/livez", "/healthz", "/readyz", "/metrics")


class KnownEndpoints:
    """A labelled metric whose `endpoint` is the path when the service serves it, else OTHER; its
    children bound once per set of label values (prometheus_client's labels() checks and locks on
    every call, and BentoML calls it four times a request)."""

    def __init__(self, metric: Any, known: frozenset[str]) -> None:
        self.metric, self.known = metric, known
        self.children: dict[tuple[Any, ...], Any] = {}

    def labels(self, **labels: Any) -> Any:
        if "endpoint" in labels and labels["endpoint"] not in self.known:
            labels["endpoint"] = OTHER  # before the key: unknown paths add no children either
        key = tuple(labels.values())
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = self.metric.labels(**labels)
        return child


def bound_endpoint_labels(api_routes: Collection[str]) -> None:
    """BentoML labels its request metrics with the raw path (RunnerTrafficMetricsMiddleware in
    bentoml/_internal/server/http/instruments.py), so each random path made ~20 new series. Its app
    factory imports that class when it builds the app (ServiceAppFactory.middlewares), after the
    service module is loaded: replacing it here makes every unknown path share one label value."""
    from bentoml._internal.server.http import instruments

    known = frozenset([*api_routes, *SYSTEM_ROUTES])

    class BoundedTrafficMetrics(instruments.RunnerTrafficMetricsMiddleware):
        def _setup(self, *args: Any, **kwargs: Any) -> None:
            super()._setup(*args, **kwargs)  # BentoML injects its metrics client here
            for name in (
                "metrics_request_total",
                "metrics_request_duration",
                "metrics_request_in_progress",
                "metrics_last_request_timestamp",
                "metrics_websocket_connections",
                "metrics_websocket_data_received",
                "metrics_websocket_data_sent",
            ):
                setattr(self, name, KnownEndpoints(getattr(self, name), known))

    setattr(instruments, "RunnerTrafficMetricsMiddleware", BoundedTrafficMetrics)  # noqa: B010
