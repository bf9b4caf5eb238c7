"""Files written whole or not at all, with the mode any new file gets."""
import os
from pathlib import Path

import pytest

from digitrec.config import save_yaml
from digitrec.errors import DigitrecError
from digitrec.files import atomic_path


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_written_file_gets_the_mode_of_any_new_file_not_mkstemps_0600(tmp_path: Path, umask_022) -> None:
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("whole")
    assert (tmp_path / "a.txt").read_text() == "whole"
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    save_yaml({"lr": 0.1}, tmp_path / "config.yaml")  # a run's config, which others may need to read
    assert (tmp_path / "config.yaml").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert (tmp_path / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_folder_or_a_file_in_the_way_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(DigitrecError, match="dir: it is a folder"), atomic_path(tmp_path / "dir"):
        pass
    (tmp_path / "file").write_text("")
    with pytest.raises(DigitrecError, match="file is a file, not a folder"), atomic_path(tmp_path / "file" / "x"):
        pass
