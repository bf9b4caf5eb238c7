"""The HTTP service: `create_app(settings)` builds a FastAPI app that reads digits from posted images.

The model is loaded once per worker at start-up; every image is decoded and read in a worker thread, so the
event loop only moves bytes. All state lives on `app.state`; the module holds no globals.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import swagger_ui_bundle  # Swagger UI's files, so /docs works with no CDN
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from digitrec import __version__
from digitrec.errors import DigitrecError
from digitrec.read import DEFAULT_THRESHOLD
from digitrec.read.image import MAX_PIXELS
from digitrec.serve.limits import ApiError, GuardMiddleware, MetricsMiddleware, check_pixels
from digitrec.serve.metrics import Metrics

SETTINGS_ENV = "DIGITREC_SERVE_SETTINGS"
API_KEY_ENV = "DIGITREC_API_KEY"
log = logging.getLogger("digitrec.serve")


@dataclass(frozen=True)
class ServeSettings:
    """What one worker needs: the model, the backend and the limits it enforces."""

    model: str = "default"
    backend: str = "auto"  # the reader's own choice for a built-in model (its shipped int8 export), else onnx
    threshold: float = DEFAULT_THRESHOLD
    max_body_bytes: int = 10 * 1024 * 1024
    max_pixels: int = MAX_PIXELS  # the reading pipeline's own decompression-bomb cap; lower it, not higher
    max_batch: int = 64
    threads: int = 4  # images read at once per worker; they share one inference session
    api_key: str | None = None

    def to_env(self) -> str:
        """JSON for worker processes, without the API key (that travels in its own variable)."""
        return json.dumps({k: v for k, v in dataclasses.asdict(self).items() if k != "api_key"})

    @classmethod
    def from_env(cls) -> ServeSettings:
        """The settings a `digitrec serve` parent left in the environment for its workers."""
        values = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
        return cls(**values, api_key=os.environ.get(API_KEY_ENV) or None)


class Item(BaseModel):
    digit: int
    confidence: float
    box: list[int]
    probs: list[float]


class ReadOut(BaseModel):
    """The same object `digitrec predict --json` prints for one input (without its path)."""

    digits: str = Field(description="the digits read, left to right; rows of writing one under another top to "
                                    "bottom with a newline between; empty when abstaining (see reason)")
    confidence: float
    items: list[Item]
    reason: str | None = None


class BatchEntry(ReadOut):
    index: int
    name: str
    digits: str | None = None
    confidence: float | None = None
    items: list[Item] | None = None
    error: str | None = None
    status: int | None = None


class BatchOut(BaseModel):
    results: list[BatchEntry]


class ErrorOut(BaseModel):
    error: str


ERRORS = {code: {"model": ErrorOut} for code in (401, 413, 422, 503)}
BINARY = {"schema": {"type": "string", "format": "binary"}}
OPTION_FIELDS = {"single": {"type": "boolean"}, "threshold": {"type": "number", "minimum": 0, "maximum": 1}}
READ_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                       "properties": {"image": BINARY["schema"], **OPTION_FIELDS}}},
    "image/png": BINARY, "image/jpeg": BINARY, "application/octet-stream": BINARY}}}
BATCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["images"],
    "properties": {"images": {"type": "array", "items": BINARY["schema"]}, **OPTION_FIELDS}}}}}}


class ResultJSON(JSONResponse):
    """JSON that also takes NumPy scalars (boxes and scores may come straight from array code)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_plain, ensure_ascii=False, separators=(",", ":")).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def load_recognizer(settings: ServeSettings) -> Any:
    """The recognizer one worker serves, loaded once."""
    from digitrec.read.recognizer import BUILTIN, Recognizer

    backend = settings.backend
    if backend == "auto":
        backend = None if settings.model in BUILTIN else "onnx"
    return Recognizer.load(settings.model, threshold=settings.threshold, backend=backend)


def create_app(settings: ServeSettings, recognizer: Any = None) -> FastAPI:
    """A FastAPI app serving `settings.model` (or an already loaded `recognizer`) with its limits."""
    metrics = Metrics(settings.model, settings.backend)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.recognizer is None:
            app.state.recognizer = await anyio.to_thread.run_sync(load_recognizer, settings)
        app.state.limiter = anyio.CapacityLimiter(settings.threads)
        await anyio.to_thread.run_sync(_warm_up, app.state.recognizer)
        # What is loaded now (torch, ONNX Runtime, the model, the app) lives as long as the worker: moved out of
        # the collector's reach, its full passes stop adding ~10 ms pauses to the slowest requests.
        gc.collect()
        gc.freeze()
        metrics.backend = getattr(getattr(app.state.recognizer, "backend", None), "name", settings.backend)
        metrics.ready = True
        log.info("digitrec: serving model %r on the %s backend", settings.model, metrics.backend)
        yield
        metrics.ready = False

    app = FastAPI(title="digitrec", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Reads handwritten digits from images. Errors answer {\"error\": message}.")
    app.openapi_version = "3.0.3"  # the bundled Swagger UI (4.x) renders 3.0 documents
    app.state.settings, app.state.metrics, app.state.recognizer = settings, metrics, recognizer
    app.state.limiter = None
    _add_error_handlers(app)
    _add_api_routes(app)
    _add_page_routes(app)
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_body_bytes, api_key=settings.api_key)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory each worker process calls (`digitrec serve --workers N`)."""
    return create_app(ServeSettings.from_env())


def _warm_up(recognizer: Any) -> None:
    """One blank batch through the network, so the first client does not pay for lazy initialisation."""
    recognizer.classify(np.zeros((1, 28, 28), np.float32))


def _add_api_routes(app: FastAPI) -> None:
    settings: ServeSettings = app.state.settings

    @app.post("/v1/read", response_model=ReadOut, responses=ERRORS, openapi_extra=READ_BODY,
              summary="Read the digits in one image (multipart field 'image' or the raw body)")
    async def read(request: Request, single: bool | None = Query(None, description="exactly one digit"),
                   threshold: float | None = Query(None, ge=0, le=1, description="abstain below this")):
        if _is_multipart(request):
            async with request.form(max_files=1, max_fields=16) as form:
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    raise ApiError(422, "multipart body has no file field 'image'")
                data, name = await upload.read(), upload.filename or "image"
                options = _options(form, single, threshold)
        else:
            data, name, options = await request.body(), "request body", _options(None, single, threshold)
        result = await _in_thread(app, _read_one, app, data, name, options)
        return ResultJSON(result)

    @app.post("/v1/read/batch", response_model=BatchOut, responses=ERRORS, openapi_extra=BATCH_BODY,
              summary="Read several images; one result per image, in order, failures included")
    async def read_batch(request: Request, single: bool | None = Query(None), threshold: float | None =
                         Query(None, ge=0, le=1)):
        if not _is_multipart(request):
            raise ApiError(422, "send the images as multipart/form-data files, one file field each (e.g. -F image=@a.png)")
        async with request.form(max_files=settings.max_batch, max_fields=16) as form:
            uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not uploads:
                raise ApiError(422, "multipart body has no files; send each image as a file field (e.g. -F image=@a.png)")
            files = [(u.filename or f"image {i + 1}", await u.read()) for i, u in enumerate(uploads)]
            options = _options(form, single, threshold)
        results = await _in_thread(app, _read_many, app, files, options)
        return ResultJSON({"results": results})

    @app.get("/healthz", summary="Liveness: the process answers")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the model is loaded", responses={503: {"model": ErrorOut}})
    def readyz():
        if not app.state.metrics.ready:
            return JSONResponse({"error": "model not loaded yet"}, status_code=503)
        return {"status": "ready", "model": settings.model, "backend": app.state.metrics.backend}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics of this worker")
    def metrics_text() -> PlainTextResponse:
        return PlainTextResponse(app.state.metrics.render(), media_type="text/plain; version=0.0.4")


def _add_page_routes(app: FastAPI) -> None:
    static = Path(str(resources.files("digitrec.serve") / "static"))
    page = (static / "index.html").read_text(encoding="utf-8")
    csp = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"content-security-policy": csp, "x-content-type-options": "nosniff"})

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="digitrec API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers {"error": message}; nothing internal (no traceback) reaches the client."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = f"{exc.detail}: {request.method} {request.url.path}"
        if exc.status_code == 400:  # multipart parsing: a damaged body, or more files than allowed
            status = 413 if "too many files" in str(exc.detail).lower() else 422
            if status == 413 and request.url.path == "/v1/read":  # not too much data: one image too many
                return JSONResponse({"error": "/v1/read reads one image (field 'image'); send several to "
                                              "/v1/read/batch"}, status_code=422)
            return JSONResponse({"error": f"multipart body refused: {exc.detail}"}, status_code=status)
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server logs the traceback once, for the operator.
        return JSONResponse({"error": "internal error; the server log has the details"}, status_code=500)


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


def _options(form: FormData | None, single: bool | None, threshold: float | None) -> dict[str, Any]:
    """single/threshold from the query string, else from the form fields, else the defaults."""
    if form is not None and single is None and isinstance(form.get("single"), str):
        single = _parse_bool(form["single"])
    if form is not None and threshold is None and isinstance(form.get("threshold"), str):
        threshold = _parse_threshold(form["threshold"])
    return {"single": bool(single), "threshold": threshold}


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ApiError(422, f"single: {text!r} is not a boolean (true or false)")
    return value in ("true", "1", "yes", "on")


def _parse_threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise ApiError(422, f"threshold: {text!r} must be a number in [0, 1]")
    return value


async def _in_thread(app: FastAPI, fn, *args):
    """Run blocking work (decoding, inference) in the worker's bounded thread pool, off the event loop."""
    if app.state.recognizer is None:
        raise ApiError(503, "model not loaded yet")
    return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=app.state.limiter)


def _read_one(app: FastAPI, data: bytes, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The `predict --json` dict for one image, or ApiError with what was wrong with it."""
    metrics: Metrics = app.state.metrics
    try:
        result = _decode_and_read(app, data, name, options)
    except ApiError:
        metrics.count_image("error")
        raise
    metrics.count_image("read" if result["digits"] else "abstained")
    return result


def _decode_and_read(app: FastAPI, data: bytes, name: str, options: dict[str, Any]) -> dict[str, Any]:
    if not data:
        raise ApiError(422, f"{name} is empty: send the image bytes as the raw body or as multipart field 'image'")
    check_pixels(data, app.state.settings.max_pixels, name)
    try:
        return app.state.recognizer.read(data, name=name, **options).to_dict()
    except DigitrecError as e:
        raise ApiError(422, str(e)) from None
    except Image.DecompressionBombError as e:
        raise ApiError(413, f"{name}: image has too many pixels ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # what PIL raises on a damaged file
        raise ApiError(422, f"{name}: could not decode the image ({e})") from None


def _read_many(app: FastAPI, files: list[tuple[str, bytes]], options: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per file, in order; a file that fails gets its own error entry and the rest go on."""
    out = []
    for index, (name, data) in enumerate(files):
        try:
            out.append({"index": index, "name": name, **_read_one(app, data, name, options)})
        except ApiError as e:
            out.append({"index": index, "name": name, "error": e.message, "status": e.status})
        except Exception:
            log.exception("digitrec: internal error reading batch image %d (%s)", index, name)
            out.append({"index": index, "name": name, "error": "internal error reading this image", "status": 500})
    return out
