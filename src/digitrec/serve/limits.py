"""What the service refuses before any decoding: oversized bodies, missing API keys, images with too many pixels.

Two small ASGI middlewares (timing + metrics outermost, then the guard on /v1/*) and the header-only pixel check.
"""
from __future__ import annotations

import hmac
import io
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from PIL import Image, UnidentifiedImageError

from digitrec.serve.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KNOWN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/v1/read",
                         "/v1/read/batch"})


class ApiError(Exception):
    """An answer other than 200 with a JSON body {"error": message}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_pixels(data: bytes, max_pixels: int, name: str) -> tuple[int, int]:
    """The image size from its header alone; 422 when PIL cannot identify it, 413 when it has too many pixels."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError:  # PIL refuses to even open it: far past any sane limit
        raise ApiError(413, f"{name}: {_bomb_pixels(data)} pixels, more than the limit of {max_pixels:,}; "
                            "send a smaller image") from None
    except UnidentifiedImageError:
        raise ApiError(422, f"{name}: not an image (PIL could not identify it; send PNG, JPEG, BMP, GIF, TIFF "
                            "or WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ApiError(422, f"{name}: damaged image header ({e})") from None
    if width * height > max_pixels:
        raise ApiError(413, f"{name}: {width}x{height} is {width * height:,} pixels, more than the limit of "
                            f"{max_pixels:,}; send a smaller image")
    return width, height


def _bomb_pixels(data: bytes) -> str:
    """The pixel count from a PNG header (PIL will not say), else 'too many'."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return f"{width}x{height} is {width * height:,}"
    return "too many"


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer {"error": message} with `status`, straight on the ASGI channel."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class ClientGone(Exception):
    """The client hung up before its body arrived; there is no one to answer."""


class MetricsMiddleware:
    """Counts every answer by method, path and status, and times it to the last byte sent."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self.metrics.observe(scope["method"], _path_label(scope["path"]), status, time.perf_counter() - start)


def _path_label(path: str) -> str:
    """The path as a metric label, from a fixed set so that random URLs cannot grow the metrics."""
    if path in KNOWN_PATHS:
        return path
    return "/static" if path.startswith(("/static/", "/docs-assets/")) else "other"


class GuardMiddleware:
    """On /v1/*: the API key (when one is set), then the body read whole but never past `max_body_bytes`."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, api_key: str | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if self.api_key and not _key_matches(headers, self.api_key):
            return await send_error(send, 401, "missing or wrong API key: send it in the X-API-Key header",
                                    [(b"www-authenticate", b'Bearer realm="digitrec"')])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length.isdigit() and int(length) > self.max_body_bytes:
            return await send_error(send, 413, _too_large(int(length), self.max_body_bytes))
        try:
            body = await self._read_body(receive)
        except ClientGone:
            return None
        if body is None:
            return await send_error(send, 413, _too_large(None, self.max_body_bytes))
        await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it grows past the limit (a chunked upload has no length)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _key_matches(headers: dict[bytes, bytes], key: str) -> bool:
    given = headers.get(b"x-api-key", b"")
    auth = headers.get(b"authorization", b"")
    if not given and auth.lower().startswith(b"bearer "):
        given = auth[7:].strip()
    return hmac.compare_digest(given, key.encode())


def _too_large(length: int | None, limit: int) -> str:
    size = f"{length:,} bytes" if length is not None else "more"
    return f"request body is {size}; the limit is {limit:,} bytes"


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body over once, then waits on the real channel (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
