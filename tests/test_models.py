import pytest
import torch

from digitrec.errors import DigitrecError
from digitrec.models import REGISTRY, create_model, list_models, num_params

TUTORIAL_PARAMS = {"lenet5": 61_706, "cnn": 1_199_882, "cnn5": 212_542}


@pytest.mark.parametrize("name", list(REGISTRY))
@pytest.mark.parametrize("batch", [1, 3])
def test_every_model_maps_images_to_ten_logits(name, batch):
    torch.manual_seed(0)
    model = create_model(name).eval()
    out = model(torch.rand(batch, 1, 28, 28))
    assert out.shape == (batch, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_model_trains_in_channels_last(name):
    torch.manual_seed(0)
    model = create_model(name).to(memory_format=torch.channels_last).train()
    x = torch.rand(4, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    model(x).sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name,count", TUTORIAL_PARAMS.items())
def test_tutorial_models_have_their_published_parameter_counts(name, count):
    assert num_params(create_model(name)) == count


@pytest.mark.parametrize("name", [n for n in REGISTRY if n not in TUTORIAL_PARAMS])
def test_our_models_stay_under_two_megabytes(name):
    assert num_params(create_model(name)) * 4 < 2 * 1024 * 1024


def test_attention_and_separable_are_options_of_one_model():
    base = num_params(create_model("digitnet"))
    assert num_params(create_model("digitnet", attention=True)) > base
    assert num_params(create_model("digitnet", separable=True)) < base / 2
    cbam = create_model("digitnet-cbam")
    assert any(type(m).__name__ == "CBAM" for m in cbam.modules())
    assert cbam.digitrec_spec == {"name": "digitnet-cbam", "args": create_model("digitnet", attention=True).digitrec_spec["args"]}


def test_stridenet_keeps_full_resolution_until_its_strided_convs():
    model = create_model("stridenet").eval()
    sizes = []
    model.stage1.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    model.stage2.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    model.neck.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1]))
    model(torch.rand(2, 1, 28, 28))
    assert sizes == [12, 4, 1]  # 28 -> 26 -> 24 -> 12, 12 -> 10 -> 8 -> 4, then the 4x4 neck
    assert not any(isinstance(m, (torch.nn.MaxPool2d, torch.nn.AvgPool2d)) for m in model.modules())
    assert num_params(create_model("stridenet", separable=True)) < num_params(model) / 2


def test_models_normalise_inside_so_inputs_are_plain_unit_range():
    model = create_model("lenet5").eval()
    blank = torch.zeros(1, 1, 28, 28)
    with torch.no_grad():
        first = model.conv1(torch.full_like(blank, -0.1307 / 0.3081))
        assert torch.allclose(torch.relu(first), torch.relu(model.conv1((blank - 0.1307) / 0.3081)))


def test_unknown_model_name_suggests_the_closest():
    with pytest.raises(DigitrecError, match="did you mean 'lenet5'"):
        create_model("lenet")


def test_unknown_model_option_is_one_clear_error():
    with pytest.raises(DigitrecError, match="does not take"):
        create_model("lenet5", width=3)
    with pytest.raises(DigitrecError, match="widths"):
        create_model("digitnet", widths=[8, 8])
    with pytest.raises(DigitrecError, match=r"a value of the wrong type among \{'dropout': 'nan'\}"):
        create_model("digitnet", dropout="nan")  # a known option with a bad value is not called unknown


def test_list_models_reports_size_in_kb():
    rows = {r["name"]: r for r in list_models()}
    assert rows["lenet5"]["params"] == 61_706
    assert rows["lenet5"]["size_kb"] == pytest.approx(61_706 * 4 / 1024, abs=0.1)
