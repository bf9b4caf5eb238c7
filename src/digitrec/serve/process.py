"""`digitrec serve` as a child process: start it on a free localhost port, wait until ready, stop it.

For programs that drive a real server (the tests, the browser test, the load benchmark) rather
than the in-process app.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from digitrec.errors import DigitrecError


@dataclass
class ServerProcess:
    """A running `digitrec serve`: its process, base URL and the file its output goes to."""

    proc: subprocess.Popen
    url: str
    log: Path

    def stop(self) -> None:
        """Ask for a graceful shutdown (as Ctrl-C does); kill it if that takes over 20 s."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: Sequence[str], *, timeout: float = 120.0, env: Mapping[str, str] | None = None,
                 log: Path | None = None) -> ServerProcess:
    """Run `digitrec serve ARGS --port P` and return once /readyz answers; DigitrecError, with the log, if not."""
    port = free_port()
    log = log or Path(tempfile.mkstemp(prefix="digitrec_serve_", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", *args, "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(server.url + "/readyz", timeout=2)
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise DigitrecError(f"digitrec serve did not become ready in {timeout:.0f} s:\n{log.read_text()}")
            time.sleep(0.3)


@contextmanager
def running_server(args: Sequence[str], **kwargs) -> Iterator[ServerProcess]:
    """start_server() for the length of a with-block, stopped however the block ends."""
    server = start_server(args, **kwargs)
    try:
        yield server
    finally:
        server.stop()
