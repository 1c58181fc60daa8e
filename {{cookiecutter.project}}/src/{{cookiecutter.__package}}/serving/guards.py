"""HTTP guards of the service, which answer its API route: JSON bodies only, of bounded size and
read time; refusals counted by reason and logged in one line each; request metrics whose labels an
unknown path cannot multiply."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

import bentoml
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
# The logger BentoML names its failed requests with (bentoml._internal.server.http_app).
REFUSALS = logging.getLogger("bentoml._internal.server.http_app")
FAULTS = logging.getLogger(__name__)
MEDIA_TYPE = b"application/json"
JSON_HEADERS = [(b"content-type", MEDIA_TYPE)]
DRAINED = 8  # a refused body up to this many times the limit is read to its end and dropped
# BentoML's answer to an exception (_bentoml_impl/server/app.py, api_endpoint_wrapper).
FAULT = "An unexpected error has occurred, please check the server log."
Answer = Callable[[bytes], bytes]


class TooLarge(Exception):
    """The body has grown past the limit; `more` when the client has not sent all of it."""

    def __init__(self, size: int, more: bool) -> None:
        super().__init__(size)
        self.size, self.more = size, more


class Guard:
    """ASGI middleware that answers the API routes itself: 415 for a body that is not JSON, 413 for
    one over max_body_bytes, 408 for one that has not arrived within read_timeout seconds, 400 for
    one that breaks the contract; every 4xx counted by reason and logged in one line.

    BentoML would read any body whole, without a limit or a deadline (its request timeout then
    answers 504, counted as a server error), and would parse multipart or form bodies it cannot
    validate (a 500). Its own request path (a router, a context middleware, a request object, a
    background task per request) costs more CPU than the model, so the guard hands the body it
    read to `answer`, the service's parse, predict and write. BentoML adds this middleware inside
    its metrics, tracing, timeout and concurrency middlewares (_bentoml_impl/server/app.py,
    ServiceAppFactory.middlewares): those still see every request, and the deadline here must
    stay under the request timeout.
    """

    def __init__(
        self,
        app: App,
        routes: Collection[str],
        answer: Answer,
        max_body_bytes: int,
        read_timeout: float,
    ) -> None:
        self.app = app
        self.routes = frozenset(routes)
        self.answer = answer
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
            await refuse(scope, send, 415, "unsupported_media_type", reason, close=True)
            return
        length = headers.get(b"content-length", b"")
        declared = int(length) if length.isdigit() else 0
        # One deadline for the body, read or drained: it stays under BentoML's request timeout.
        deadline = asyncio.get_running_loop().time() + self.read_timeout
        try:
            async with asyncio.timeout_at(deadline):
                if declared > self.limit:
                    raise TooLarge(0, more=True)
                body = await read(receive, self.limit)
        except TooLarge as large:
            drainable = declared <= DRAINED * self.limit
            drained = drainable and await self.drain(receive, large, deadline)
            message = f"body over {self.limit} bytes"
            await refuse(scope, send, 413, "body_too_large", message, close=not drained)
            return
        except TimeoutError:
            reason = f"the body did not arrive within {self.read_timeout:g} s"
            await refuse(scope, send, 408, "body_timeout", reason, close=True)
            return
        if body is None:  # the client left
            return
        try:
            status, answer = 200, self.answer(body)
        except ValidationError as error:
            status, answer = 400, invalid(error)
            REJECTED.labels(reason=str(error.errors()[0]["type"])).inc()
            REFUSALS.info("refused %s: %s", scope["path"], described(error))
        except Exception:
            FAULTS.exception("%s failed", scope["path"])
            status, answer = 500, json.dumps({"error": FAULT}).encode()
        await respond(send, status, answer)

    async def drain(self, receive: Receive, large: TooLarge, deadline: float) -> bool:
        """Read and drop the rest of a refused body, so that the client, still sending, reads
        the 413 instead of a reset connection: True when it all arrived by the deadline, within
        DRAINED times the limit."""
        size, more = large.size, large.more
        try:
            async with asyncio.timeout_at(deadline):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect" or size > DRAINED * self.limit:
                        return False
                    size += len(message.get("body", b""))
                    more = message.get("more_body", False)
        except TimeoutError:
            return False
        return True


async def read(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when the client disconnects first."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
        if size > limit:
            raise TooLarge(size, more)
    return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes, close: bool = False) -> None:
    """A JSON answer in two messages; with close, the connection closes after it (uvicorn's
    httptools_impl.send reads the header)."""
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def refuse(
    scope: Scope, send: Send, status: int, reason: str, message: str, close: bool
) -> None:
    """Answer {"error": message}, counted and logged; close when the body was not read whole."""
    REJECTED.labels(reason=reason).inc()
    REFUSALS.info("refused %s: %s", scope["path"], reason)
    await respond(send, status, json.dumps({"error": message}).encode(), close)


def invalid(error: ValidationError) -> bytes:
    """The 400 of a body that breaks the contract, each problem under `detail` (the shape of
    BentoML's answer to a ValidationError, which its OpenAPI document and ours publish), without
    the values sent."""
    detail = error.errors(include_url=False, include_context=False, include_input=False)
    count = len(detail)
    message = f"{count} validation error{'s' if count > 1 else ''} for {error.title}"
    return json.dumps({"error": message, "detail": detail}).encode()


def described(error: ValidationError) -> str:
    """The log line's account of a refused body: where and what, for the first three problems."""
    return "; ".join(f"{where(e['loc'])}: {e['type']}" for e in error.errors()[:3])


def where(loc: tuple[int | str, ...]) -> str:
    """records.0.spend; a client's long field name cut short, so that it cannot flood the log."""
    return ".".join(str(part)[:60] for part in loc) or "body"


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


class Deadline:
    """BentoML's request timeout (traffic.timeout: a 504 when no answer has started in time) at
    less cost. BentoML's TimeoutMiddleware (bentoml/_internal/server/http/traffic.py) runs each
    request in a task of its own, and leaves its timer armed for the whole timeout after the answer:
    at 1,000 requests/s a worker holds 10,000 of them. This one runs the request in the
    connection's task, under asyncio.timeout, whose timer goes with the answer (the README's
    serving benchmark has the CPU it saves)."""

    def __init__(self, app: App, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False

        async def starting(message: Message) -> None:
            nonlocal started
            if not started:  # as BentoML's: an answer that has started is not cut short
                started = True
                deadline.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout) as deadline:
                await self.app(scope, receive, starting)
        except TimeoutError:
            if not deadline.expired():  # once the answer starts, it cannot expire
                raise  # not this deadline's: the app's own
            message = f"Not able to process the request in {self.timeout} seconds"  # BentoML's
            await respond(send, 504, json.dumps({"error": message}).encode())


def cheaper_request_timeout() -> None:
    """BentoML's app factory imports its TimeoutMiddleware when it builds the app (BaseAppFactory.
    middlewares in bentoml/_internal/server/base_app.py), after the service module is loaded:
    replacing it here puts Deadline in its place, with the service's traffic.timeout."""
    from bentoml._internal.server.http import traffic

    setattr(traffic, "TimeoutMiddleware", Deadline)  # noqa: B010
