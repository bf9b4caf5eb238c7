"""Files written whole or not at all: a temp file beside the target, a new file's usual mode, then a rename."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from digitrec.errors import DigitrecError


def normal_file_mode(path: str | Path) -> None:
    """Give a mkstemp file (0600) the mode a plain new file gets (0666 less the umask) before it is renamed."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def file_in_the_way(folder: str | Path) -> Path | None:
    """The file, if any, that `folder` or one of the folders above it names, so it cannot be a folder."""
    return next((p for p in (Path(folder), *Path(folder).parents) if p.exists() and not p.is_dir()), None)


def temp_beside(path: str | Path, suffix: str = ".tmp") -> Path:
    """A fresh, empty temp file next to `path` (same folder, so the rename is atomic) with a new file's mode;
    a folder that cannot be made, a file in its way included, is one DigitrecError naming `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as e:
        blocker = file_in_the_way(path.parent)
        why = f"{blocker} is a file, not a folder" if blocker else (e.strerror or str(e))
        raise DigitrecError(f"cannot write {path}: {why}") from None
    os.close(fd)
    normal_file_mode(tmp)
    return Path(tmp)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp file beside `path` to write; when the block ends without error it is flushed to disk and
    renamed onto `path`, else removed, so `path` holds the old file or the whole new one, never half of one."""
    path = Path(path)
    if path.is_dir():
        raise DigitrecError(f"cannot write {path}: it is a folder")
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise DigitrecError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
