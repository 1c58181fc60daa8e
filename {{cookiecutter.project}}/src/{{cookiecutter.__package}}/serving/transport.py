"""The HTTP connection's limits that uvicorn lacks: a deadline and a size cap for request headers.

uvicorn arms no timer on a new connection, and cancels its keep-alive timer on every byte that
arrives (`data_received` in uvicorn/protocols/http/httptools_impl.py and h11_impl.py), so a client
that sends nothing, or a header a byte at a time, holds a connection for ever; httptools accepts
headers of any size. BentoML builds uvicorn's Config itself with the default `http="auto"`
(_bentoml_impl/worker/service.py), which uvicorn resolves through `HTTP_PROTOCOLS` when the server
starts, after the service module is loaded: `install` points that name at the protocol below.
"""

import asyncio
import json
import logging
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .guards import REFUSALS, REJECTED

MAX_HEAD_BYTES = 32 * 1024  # as nginx's large_client_header_buffers (4 x 8k) allows, and more
INVALID = "Invalid HTTP request received."  # uvicorn's warning before its 400 (data_received)


class HeadTooLarge(Exception):
    """The request line and headers have grown past MAX_HEAD_BYTES."""


def response(status: int, phrase: str, message: str) -> bytes:
    """A whole HTTP response that closes the connection, with the service's error body."""
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class Protocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (a dependency of the project) with a deadline for each
    request's headers: from the connection's start, or from the first byte of a request on a
    kept-alive connection (idle ones are closed by uvicorn's keep-alive timeout). Late: 408; too
    long: 431."""

    read_timeout = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None
        self.head_bytes = 0  # bytes received while a head is awaited
        self.parsed_head = 0  # the bytes of the URL and headers parsed so far
        self.waiting_after: Any = None  # the request before the one whose head is awaited

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm()

    def data_received(self, data: bytes) -> None:
        if self.deadline is None and (self.cycle is None or self.cycle.response_complete):
            self.arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self.deadline is None or self.transport.is_closing():
            return
        if self.cycle is not self.waiting_after:  # a request's head is complete
            self.disarm()
            return
        self.head_bytes += len(data)
        if self.head_bytes > MAX_HEAD_BYTES:
            self.refuse(431, "Request Header Fields Too Large", "headers_too_large",
                        f"request headers over {MAX_HEAD_BYTES} bytes")  # fmt: skip

    def on_url(self, url: bytes) -> None:
        self.parsed_head += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        # A head that arrives whole in one read is parsed before data_received can count it.
        self.parsed_head += len(name) + len(value) + 4
        if self.parsed_head > MAX_HEAD_BYTES:
            raise HeadTooLarge  # httptools raises it as a parser error: send_400_response below
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.parsed_head = 0
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP (a malformed chunk, a bad request line),
        in the service's error shape and counted like every other refusal."""
        if self.parsed_head > MAX_HEAD_BYTES:
            self.refuse(431, "Request Header Fields Too Large", "headers_too_large",
                        f"request headers over {MAX_HEAD_BYTES} bytes")  # fmt: skip
            return
        self.refuse(400, "Bad Request", "invalid_http", msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        super().connection_lost(exc)

    def arm(self) -> None:
        self.disarm()
        self.head_bytes, self.waiting_after = 0, self.cycle
        self.deadline = self.loop.call_later(self.read_timeout, self.expire)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def expire(self) -> None:
        self.deadline = None
        if self.cycle is not self.waiting_after or self.transport.is_closing():
            return
        self.refuse(408, "Request Timeout", "header_timeout",
                    f"request headers not received within {self.read_timeout:g} s")  # fmt: skip

    def refuse(self, status: int, phrase: str, reason: str, message: str) -> None:
        self.disarm()
        REJECTED.labels(reason=reason).inc()
        REFUSALS.info("refused a connection: %s", reason)
        self.transport.write(response(status, phrase, message))
        self.transport.close()


def install(read_timeout: float) -> None:
    """Serve every connection of this process with Protocol."""
    Protocol.read_timeout = read_timeout
    HTTP_PROTOCOLS["auto"] = f"{__name__}:Protocol"
    # A client's malformed request is one INFO line (Protocol.refuse), not also a WARNING.
    logging.getLogger("uvicorn.error").addFilter(lambda record: record.getMessage() != INVALID)
