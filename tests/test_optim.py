import pytest
import torch

from digitrec.config import TrainConfig
from digitrec.models import create_model
from digitrec.training.optim import EMA, build_optimizer, build_scheduler


def _lrs(cfg: TrainConfig, steps_per_epoch: int = 10) -> list[float]:
    model = create_model("lenet5")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    out = []
    for _ in range(cfg.epochs * steps_per_epoch):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("adamw", "AdamW"), ("radam", "RAdam")])
def test_each_optimizer_is_built_without_decay_on_norms_and_biases(name, cls):
    opt = build_optimizer(create_model("digitnet"), TrainConfig(optimizer=name, weight_decay=0.01))
    assert type(opt).__name__ == cls
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])


def test_onecycle_rises_then_anneals_to_near_zero():
    lrs = _lrs(TrainConfig(schedule="onecycle", lr=0.2, epochs=4))
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(0.2 / 25)
    assert max(lrs) == pytest.approx(0.2, rel=0.05) and 8 <= peak <= 12
    assert lrs[-1] < 0.2 * 0.01


def test_cosine_with_warmup_starts_low_peaks_and_decays():
    lrs = _lrs(TrainConfig(schedule="cosine", lr=0.1, epochs=4, warmup_epochs=1))
    assert lrs[0] < 0.02 and lrs[10] == pytest.approx(0.1) and lrs[-1] < 0.01
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_step_schedule_decays_by_gamma_every_step_size_epochs():
    lrs = _lrs(TrainConfig(schedule="step", lr=0.1, epochs=4, step_size=2, gamma=0.1))
    assert lrs[0] == pytest.approx(0.1) and lrs[19] == pytest.approx(0.1) and lrs[20] == pytest.approx(0.01)


def test_constant_schedule_keeps_the_rate():
    assert set(_lrs(TrainConfig(schedule="constant", lr=0.05, epochs=2))) == {0.05}


def test_ema_moves_toward_the_weights_by_one_minus_decay():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.9)
    before = ema.state_dict()["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=1000)
    assert torch.allclose(ema.state_dict()["weight"], before + 0.1)


def test_ema_decay_warms_up_so_early_averages_follow_the_weights():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, 0.999)
    before = ema.state_dict()["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model, step=0)  # decay (1 + 0) / (10 + 0) = 0.1: 90 % of the way to the weights
    assert torch.allclose(ema.state_dict()["weight"], before + 0.9)
