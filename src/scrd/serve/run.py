"""``scrd serve MODEL``: load the model once, bind the socket, run uvicorn until SIGINT/SIGTERM."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from ..detector import Detector, resolve_model_path
from ..errors import ConfigError
from ..runs.rundir import prepare_process
from .app import create_app, require_packages
from .service import ScoringService, ServeSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one, which ``getsockname`` tells)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def build_service(
    model: str | Path, device: str = "auto", precision: str = "auto", settings: ServeSettings | None = None
) -> ScoringService:
    """The model loaded once, with the service's settings (``max_batch`` 0: the model's batch size)."""
    prepare_process()
    detector = Detector.load(model, device, precision)
    settings = settings or ServeSettings()
    if settings.max_batch <= 0:
        from dataclasses import replace

        settings = replace(settings, max_batch=detector.config.train.batch_size)
    for name in ("max_batch", "queue", "max_bytes", "max_files", "max_connections"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if settings.max_wait_ms < 0:
        raise ConfigError("--max-wait-ms must be >= 0")
    return ScoringService(detector, resolve_model_path(model), settings)


def serve(
    model: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    precision: str = "auto",
    settings: ServeSettings | None = None,
    log_level: str = "info",
) -> None:
    """Serve ``model`` until interrupted; prints the address (the port chosen, with ``port`` 0)."""
    require_packages()
    import uvicorn

    service = build_service(model, device, precision, settings)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    s = service.settings
    shown = f"[{host}]" if ":" in host else host
    print(
        f"scrd serve: {service.model_file} (sha256 {service.model_sha256[:12]}, {service.detector.device}, "
        f"{service.detector.precision}) at http://{shown}:{bound}/ ; batches of up to {s.max_batch}, "
        f"wait {s.max_wait_ms:g} ms, queue {s.queue} images, files up to {s.max_bytes:,} bytes",
        flush=True,
    )
    if host not in LOOPBACK:
        print(
            f"scrd serve: warning: listening on {host}, beyond this machine, with no authentication or TLS; "
            "put it behind the hospital's reverse proxy",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(
        create_app(service), log_level=log_level, timeout_graceful_shutdown=10, limit_concurrency=s.max_connections
    )
    uvicorn.Server(config).run(sockets=[sock])
