"""Every file under configs/ resolves as the command its header names would load it: a typo in a plan costs a
lent GPU's minutes, so it must fail here first."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from digitrec.config import build_config, load_yaml

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_many.py"


def _train_many():
    spec = importlib.util.spec_from_file_location("train_many", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_each_config_resolves(path: Path) -> None:
    if "jobs" in (yaml.safe_load(path.read_text()) or {}):  # a plan for scripts/train_many.py
        jobs = _train_many().load_plan(path)
        assert jobs and all(cfg.name == name for name, cfg in jobs.items())
    else:  # a `digitrec train --config` file
        cfg = build_config("default", load_yaml(path), source=str(path))
        assert cfg.epochs >= 1


def test_the_pen_plan_draws_pens_from_the_first_epoch_in_every_job() -> None:
    jobs = _train_many().load_plan(Path(SCRIPT).parents[1] / "configs" / "gpu-pen.yaml")
    shipped = build_config("default", load_yaml(Path(SCRIPT).parents[1] / "configs" / "shipped.yaml"))
    assert len(jobs) == 8 and all(cfg.augment.pen_p >= 0.2 and cfg.augment.edge_p >= 0.3 for cfg in jobs.values())
    same = jobs["p-digitnet-light-s8"]  # the shipped recipe but for the pen
    for key in ("model", "model_args", "seed", "lr", "batch_size", "font_digits", "fonts", "label_smoothing"):
        assert getattr(same, key) == getattr(shipped, key), key
    assert {k: v for k, v in vars(same.augment).items() if not k.startswith(("pen", "edge"))} == \
        {k: v for k, v in vars(shipped.augment).items() if not k.startswith(("pen", "edge"))}
