"""The HTTP face of :class:`~.service.ScoringService` (FastAPI on uvicorn, ``pip install 'scrd[serve]'``).

* ``POST /score`` multipart/form-data, one or more files (any field name); ``?heatmap=1`` adds the
  panel (base64 PNG), ``?dicom=1`` the DICOM heat map of DICOM uploads (base64). Every file is checked
  and decoded before any is queued: one bad file refuses the request with its 4xx and reason, and
  nothing of it is scored. A full queue answers 503 with ``Retry-After``.
* ``GET /`` the page (:mod:`.page`), ``GET /health``, ``GET /model``.

Status codes: 400 no file or an empty one, 413 too many files or bytes or pixels, 415 not an image
scrd reads, 422 an image it cannot use (undecodable, several frames ...), 503 queue full or service
stopping, 500 the model failed on the image (the worker carries on).
"""

# no `from __future__ import annotations`: FastAPI reads the route signatures' types at run time, and
# Request is imported inside create_app (the web packages are optional)
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .batcher import QueueFull, Stopped
from .page import PAGE
from .service import ScoringService
from .uploads import UploadError, display_name, prepare_upload, too_large

INSTALL_HINT = "pip install 'scrd[serve]'"
FORM_OVERHEAD = 64 * 1024  # multipart boundaries and headers, per request


def require_packages() -> None:
    """A clear error when the optional web packages are missing."""
    missing = []
    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("multipart", "python-multipart")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    if missing:
        raise ConfigError(f"scrd serve needs {', '.join(missing)}, not installed; {INSTALL_HINT}")


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit`` bytes gets 413 before it is all read (a
    declared Content-Length at once; a chunked body as soon as it passes the limit)."""

    class _TooLarge(Exception):
        pass

    def __init__(self, app: Any, limit: int, reason: str) -> None:
        self.app, self.limit, self.reason = app, limit, reason

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen, started = 0, False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyLimit._TooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyLimit._TooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send) -> None:
        import json

        body = json.dumps({"detail": self.reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers + [(b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def create_app(service: ScoringService):
    """The FastAPI app over ``service``; the batcher starts and stops with the app."""
    require_packages()
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile

    settings = service.settings

    @asynccontextmanager
    async def lifespan(app):
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(title="scrd", version=service.model_sha256[:12], lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(UploadError)
    async def _bad_upload(request, exc: UploadError):
        return JSONResponse({"detail": exc.reason, "file": exc.file}, status_code=exc.status)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE)

    @app.get("/health")
    async def health():
        info = service.health()
        return JSONResponse(info, status_code=200 if info["status"] == "ok" else 503)

    @app.get("/model")
    async def model():
        return service.model_info()

    @app.post("/score")
    async def score(request: Request, heatmap: bool = False, dicom: bool = False):
        form = await request.form(max_files=settings.max_files + 1, max_fields=100)
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise UploadError(
                400, "no file: send multipart/form-data with one or more files (e.g. curl -F file=@a.png)"
            )
        if len(files) > settings.max_files:
            raise UploadError(413, f"{len(files)} files in one request, more than --max-files ({settings.max_files})")
        with tempfile.TemporaryDirectory(prefix="scrd-serve-") as folder:
            prepared = []
            for index, upload in enumerate(files):
                name = display_name(upload.filename, index)
                if upload.size is not None and upload.size > settings.max_bytes:  # known without reading it
                    raise too_large(name, upload.size, settings.max_bytes)
                data = await upload.read(settings.max_bytes + 1)
                prepared.append(
                    await run_in_threadpool(
                        prepare_upload,
                        data,
                        name,
                        Path(folder),
                        index,
                        service.detector.image_size,
                        service.detector.config.data,
                        settings.max_bytes,
                    )
                )
            try:
                futures = service.batcher.submit([p.image for p in prepared])
            except QueueFull as exc:
                return JSONResponse({"detail": f"busy: {exc}"}, status_code=503, headers={"Retry-After": "1"})
            except Stopped as exc:
                return JSONResponse({"detail": str(exc)}, status_code=503)
            results = []
            for upload, future in zip(prepared, futures):
                try:
                    scored = await asyncio.wrap_future(future)
                except Stopped as exc:
                    return JSONResponse({"detail": str(exc)}, status_code=503)
                except Exception as exc:
                    detail = f"{upload.name}: the model failed on this image ({type(exc).__name__}: {exc})"
                    return JSONResponse({"detail": detail, "file": upload.name}, status_code=500)
                results.append(await run_in_threadpool(service.answer, upload, scored, heatmap, dicom))
        return {"model_sha256": service.model_sha256, "results": results}

    limit = settings.max_files * settings.max_bytes + FORM_OVERHEAD
    reason = (
        f"request body over {limit:,} bytes (--max-files {settings.max_files} x --max-bytes {settings.max_bytes:,})"
    )
    return BodyLimit(app, limit, reason)


__all__ = ["create_app", "require_packages"]
