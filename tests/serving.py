"""Helpers of the service tests: a real uvicorn server in a thread on a free loopback port, and a
small HTTP client over the standard library (multipart uploads included)."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from scrd.data.phantom import phantom_slice


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL
    and stops the server (and with it the app's batcher) on exit."""
    import uvicorn

    from scrd.serve.run import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    """(status, headers, parsed JSON or raw bytes) of one request, on a fresh connection."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, path or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("content-type", "")
        return response.status, dict(response.getheaders()), json.loads(data) if "json" in kind else data
    finally:
        connection.close()


def multipart(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data upload of ``(file name, bytes)`` pairs."""
    boundary = uuid.uuid4().hex
    chunks = []
    for name, data in files:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        chunks += [data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def post_files(url: str, files: list[tuple[str, bytes]], query: str = ""):
    body, kind = multipart(files)
    return request(url + "/score" + (f"?{query}" if query else ""), "POST", body, {"Content-Type": kind})


def png_bytes(size: int = 64, seed: int = 0, lesion: bool = False, noise: bool = False) -> bytes:
    """A phantom slice as an 8-bit PNG (``noise``: random pixels, which compress badly)."""
    import io

    rng = np.random.default_rng(seed)
    image = rng.random((size, size)) if noise else phantom_slice(rng, size, lesion)
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
