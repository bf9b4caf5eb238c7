import pytest

from digitrec.config import RECIPES, TrainConfig, build_config, from_dict, load_yaml, save_yaml
from digitrec.errors import DigitrecError


def test_defaults_are_valid_and_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig()
    cfg.validate()
    path = save_yaml(cfg.to_dict(), tmp_path / "config.yaml")
    assert from_dict(load_yaml(path)) == cfg


def test_layers_apply_in_order_defaults_recipe_file_flags():
    cfg = build_config("tutorial", {"epochs": 3, "lr": 0.01}, {"lr": 0.05})
    assert cfg.model == "lenet5" and cfg.batch_size == 64 and not cfg.augment.enabled  # recipe
    assert cfg.epochs == 3  # file over recipe
    assert cfg.lr == 0.05  # flag over file


def test_nested_augment_settings_merge_key_by_key():
    cfg = build_config("default", {"augment": {"rotate": 5.0}}, {"augment": {"erase_p": 0.2}})
    assert cfg.augment.rotate == 5.0 and cfg.augment.erase_p == 0.2
    assert cfg.augment.scale == TrainConfig().augment.scale


def test_unknown_key_is_rejected_with_a_suggestion():
    with pytest.raises(DigitrecError, match=r"unknown setting lrr; did you mean 'lr'"):
        build_config("default", {"lrr": 0.1}, source="my.yaml")
    with pytest.raises(DigitrecError, match=r"augment.rotat.*'rotate'"):
        build_config("default", {"augment": {"rotat": 3}})


@pytest.mark.parametrize(
    "layer,match",
    [
        ({"optimizer": "adamm"}, "did you mean 'adam'"),
        ({"schedule": "cosin"}, "cosine"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1}, "lr"),
        ({"batch_size": "big"}, "batch_size"),
        ({"epochs": 2.5}, "epochs"),
        ({"label_smoothing": 1.5}, "label_smoothing"),
        ({"ema": 1.0}, "ema"),
        ({"device": "tpu"}, "device"),
        ({"augment": {"erase_p": 2}}, "erase_p"),
        ({"tensorboard": "maybe"}, "tensorboard"),
    ],
)
def test_bad_values_name_the_setting(layer, match):
    with pytest.raises(DigitrecError, match=match):
        build_config("default", layer)


def test_unknown_recipe_is_rejected():
    with pytest.raises(DigitrecError, match="recipe"):
        build_config("fastest")
    assert "tutorial" in RECIPES


def test_bad_yaml_files_get_one_clear_error(tmp_path):
    with pytest.raises(DigitrecError, match="cannot be read"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\n")
    with pytest.raises(DigitrecError, match="not valid YAML"):
        load_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(DigitrecError, match="mapping"):
        load_yaml(listy)


def test_string_booleans_and_ints_from_yaml_are_coerced():
    cfg = from_dict({"progress": "false", "epochs": 3.0, "lr": 1})
    assert cfg.progress is False and cfg.epochs == 3 and cfg.lr == 1.0


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_recipe_resolves_to_valid_settings(recipe):
    cfg = build_config(recipe)
    assert cfg.epochs >= 1
    if recipe == "fast":
        assert cfg.model_args == {"widths": [16, 32, 48]} and cfg.ema > 0 and cfg.augment.enabled
