"""`digitrec serve`: uvicorn in front of `create_app`, one process or several workers."""
from __future__ import annotations

import os
import socket

from digitrec.errors import DigitrecError
from digitrec.serve.app import API_KEY_ENV, SETTINGS_ENV, ServeSettings, create_app, load_recognizer


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info") -> None:
    """Serve until interrupted. The model is loaded here first, so a bad model fails at once with its message."""
    import uvicorn

    recognizer = load_recognizer(settings)  # raises DigitrecError before any socket is opened
    _check_address(host, port)
    common = dict(host=host, port=port, log_level=log_level, server_header=False, timeout_graceful_shutdown=5)
    if workers <= 1:
        uvicorn.run(create_app(settings, recognizer), **common)
        return
    del recognizer  # each worker process loads its own copy at start-up
    os.environ[SETTINGS_ENV] = settings.to_env()
    if settings.api_key:
        os.environ[API_KEY_ENV] = settings.api_key
    # Workers import torch and load a model before they answer uvicorn's health pings; give them time.
    uvicorn.run("digitrec.serve.app:app_from_env", factory=True, workers=workers, timeout_worker_healthcheck=60,
                **common)


def _check_address(host: str, port: int) -> None:
    """One clear error, before uvicorn starts, for a host that does not resolve or a port already taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
            probe.bind(address)
    except OSError as e:
        raise DigitrecError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
