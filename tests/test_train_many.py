"""scripts/train_many.py: several runs at once within a budget, font digits from a cache file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_many.py"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_jobs_train_the_epochs_that_fit_and_report(tmp_path, mnist_dir):
    if not Path(FONT).exists():
        pytest.skip(f"needs {FONT} (Debian package fonts-dejavu-core)")
    plan = tmp_path / "plan.yaml"
    common = {"data_dir": str(mnist_dir), "model": "lenet5", "batch_size": 16, "train_subset": 320, "val_size": 200,
              "optimizer": "adam", "lr": 2e-3, "epochs": 3, "tensorboard": False, "augment": {"enabled": False}}
    plan.write_text(yaml.safe_dump({"defaults": common, "jobs": {
        "plain": {"seed": 1},
        "fonts": {"seed": 2, "font_digits": 0.25, "font_variants": 1, "fonts": [FONT]},
    }}))
    cache = tmp_path / "fonts.pt.gz"
    done = _run(str(plan), "--render-fonts", str(cache))
    assert done.returncode == 0, done.stderr
    runs = tmp_path / "runs"
    done = _run(str(plan), "--runs-dir", str(runs), "--budget", "400", "--font-cache", str(cache), "--threads", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {r["name"]: r for r in json.loads((runs / "summary.json").read_text())}
    assert set(rows) == {"plain", "fonts"}
    for name, row in rows.items():
        assert 1 <= row["epochs"] <= 3 and 0.3 < row["test_acc"] <= 1.0 and row["calibration"]["epoch_s"] > 0
        run = yaml.safe_load((runs / name / "config.yaml").read_text())
        assert run["epochs"] == row["epochs"]  # the config records what was trained, so the run repeats
        assert (runs / name / "best.pt").exists() and (runs / name / "metrics.json").exists()
    assert "10 images from" in (runs / "fonts.log").read_text()  # one rendering of each digit, from the cache
    assert "font digits" not in (runs / "plain.log").read_text()
