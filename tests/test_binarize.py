"""binarize(): which layers are swapped, what is kept, and the schedule hook."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bibench.algorithms import get_algorithm
from bibench.algorithms.base import BinarizedLayer, BinaryConv2d, BinaryLinear
from bibench.binarize import binarize, binarized_layers, update_schedules
from bibench.models import build_model, get_architecture

ALGORITHMS = ["bnn", "xnor", "dorefa", "bireal", "xnorpp", "reactnet", "recu", "fda"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return build_model("resnet20", (3, 16, 16), 10)


def binarized_resnet(fp, algo="bnn", **kwargs):
    x = torch.randn(2, 3, 16, 16)
    keep_fp = get_architecture("resnet20").keep_fp
    return binarize(fp, algo, example_input=x, keep_fp=keep_fp, **kwargs)


def test_first_last_and_keep_fp_layers_stay_full_precision(resnet):
    model = binarized_resnet(resnet)
    assert type(model.conv1) is nn.Conv2d  # first layer (stem)
    assert type(model.fc) is nn.Linear  # last layer (head)
    names = dict(binarized_layers(model))
    assert len(names) == 18  # 9 blocks x 2 convs
    assert all(".shortcut." not in n for n in names)
    assert type(model.layers[3].shortcut[0]) is nn.Conv2d  # 1x1 downsample kept by keep_fp
    assert all(isinstance(m, BinaryConv2d) for m in names.values())
    assert model.bibench_algorithm == "bnn"


def test_keep_first_last_off_and_patterns():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    all_binary = binarize(model, "bnn", keep_first_last=False)
    assert all(isinstance(all_binary[i], BinaryLinear) for i in (0, 2, 3))
    some = binarize(model, "bnn", keep_first_last=False, keep_fp=["2"])
    assert type(some[2]) is nn.Linear and isinstance(some[0], BinaryLinear)


def test_without_example_input_declaration_order_is_used():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    out = binarize(model, "bnn")
    assert type(out[0]) is nn.Linear and type(out[2]) is nn.Linear
    assert isinstance(out[1], BinaryLinear)


def test_relu_becomes_hardtanh_and_the_original_is_untouched(resnet):
    model = binarized_resnet(resnet)
    assert not any(type(m) is nn.ReLU for m in model.modules())
    assert any(type(m) is nn.Hardtanh for m in model.modules())
    assert any(type(m) is nn.ReLU for m in resnet.modules())
    assert not any(isinstance(m, BinarizedLayer) for m in resnet.modules())
    kept = binarized_resnet(resnet, replace_relu=False)
    assert any(type(m) is nn.ReLU for m in kept.modules())


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_fp_state_dict_loads_into_the_binarized_model(algo, resnet):
    model = binarized_resnet(resnet, algo)
    # the FP weights were copied ...
    torch.testing.assert_close(model.layers[0].conv1.weight, resnet.layers[0].conv1.weight)
    # ... and a FP checkpoint loads: only the algorithm's own parameters are missing
    fresh = build_model("resnet20", (3, 16, 16), 10)
    result = model.load_state_dict(fresh.state_dict(), strict=False)
    assert result.unexpected_keys == []
    extra = {"alpha", "beta", "gamma", "threshold", "weight_noise", "input_noise", "tau",
             "fourier_terms", "noise_alpha"}
    for key in result.missing_keys:
        assert key.split(".")[-1] in extra or set(key.split(".")) & extra, key
    if algo in ("bnn", "xnor", "dorefa", "bireal"):
        assert result.missing_keys == []
    torch.testing.assert_close(model.layers[4].conv2.weight, fresh.layers[4].conv2.weight)


def test_binarized_model_runs_forward_and_backward(resnet):
    model = binarized_resnet(resnet, "reactnet")
    x = torch.randn(4, 3, 16, 16)
    out = model(x)
    assert out.shape == (4, 10)
    out.sum().backward()


def test_update_schedules_changes_recu_tau_and_fda_n_and_alpha():
    fp = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    recu = binarize(fp, "recu")
    fda = binarize(fp, "fda")
    tau0 = recu[1].tau.item()
    update_schedules(recu, 5, 10)
    assert recu[1].tau.item() > tau0
    update_schedules(fda, 0, 10)
    n0, a0 = fda[1].fourier_terms.item(), fda[1].noise_alpha.item()
    update_schedules(fda, 6, 10)
    assert fda[1].fourier_terms.item() > n0 and fda[1].noise_alpha.item() < a0
    # epoch- and iteration-based loops agree: only the ratio matters
    update_schedules(fda, 600, 1000)
    assert fda[1].fourier_terms.item() == 9 + int(9 * 0.6)
    with pytest.raises(ValueError):
        update_schedules(fda, 0, 0)


def test_schedules_start_at_their_first_values():
    fp = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    assert binarize(fp, "recu")[1].tau.item() == pytest.approx(0.85)
    fda = binarize(fp, "fda")[1]
    assert fda.fourier_terms.item() == 9 and fda.noise_alpha.item() == pytest.approx(0.1)


SCHEDULE_BUFFERS = {"recu": ("tau",), "fda": ("fourier_terms", "noise_alpha")}


@pytest.mark.parametrize("algo", sorted(SCHEDULE_BUFFERS))
def test_schedule_state_travels_with_the_state_dict(algo):
    fp = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    trained = binarize(fp, algo)
    update_schedules(trained, 7, 10)
    state = trained.state_dict()
    resumed = binarize(fp, algo)
    resumed.load_state_dict(state)  # strict, as load_checkpoint does
    for name in SCHEDULE_BUFFERS[algo]:
        assert f"1.{name}" in state
        assert torch.equal(getattr(resumed[1], name), getattr(trained[1], name))
        assert not torch.equal(getattr(resumed[1], name), getattr(binarize(fp, algo)[1], name))


@pytest.mark.parametrize("algo", sorted(SCHEDULE_BUFFERS))
def test_a_checkpoint_without_schedule_state_loads_with_the_start_values(algo):
    """Saved when schedules were plain attributes: it loads strictly (as load_checkpoint does),
    the schedules start over, and the model evaluates exactly as the one that saved it."""
    torch.manual_seed(0)
    fp = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    saved = binarize(fp, algo)
    with torch.no_grad():
        saved[1].weight.normal_()
    update_schedules(saved, 9, 10)
    old = saved.state_dict()
    for name in SCHEDULE_BUFFERS[algo]:
        del old[f"1.{name}"]
    loaded = binarize(fp, algo)
    loaded.load_state_dict(old)  # strict
    fresh = binarize(fp, algo)
    for name in SCHEDULE_BUFFERS[algo]:
        assert torch.equal(getattr(loaded[1], name), getattr(fresh[1], name))
        assert not torch.equal(getattr(loaded[1], name), getattr(saved[1], name))
    x = torch.randn(5, 4)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x), saved.eval()(x))
    # other missing keys still fail a strict load
    del old["1.weight"]
    with pytest.raises(RuntimeError, match="1.weight"):
        binarize(fp, algo).load_state_dict(old)


class WithUnusedAuxiliaryHead(nn.Module):
    """The auxiliary head is declared last but never called by forward()."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.body = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)
        self.aux = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(torch.tanh(self.stem(x)))))


@pytest.mark.parametrize("algo", ["bnn", "reactnet"])
def test_layers_the_forward_does_not_reach_do_not_move_first_and_last(algo):
    model = binarize(WithUnusedAuxiliaryHead(), algo, example_input=torch.randn(2, 4))
    assert type(model.stem) is nn.Linear and type(model.head) is nn.Linear  # the real ends
    assert isinstance(model.body, BinaryLinear)
    assert isinstance(model.aux, BinaryLinear)  # binarized, but not taken for the last layer


class SkipsTheMiddleConv(nn.Sequential):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[2](self[0](x))


def test_an_unreached_conv_stops_xnorpp_with_a_clear_message():
    model = SkipsTheMiddleConv(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3))
    x = torch.randn(1, 1, 9, 9)
    with pytest.raises(ValueError, match=r"does not reach \['1'\]"):
        binarize(model, "xnorpp", example_input=x, keep_first_last=False)
    out = binarize(model, "xnorpp", example_input=x, keep_first_last=False, keep_fp=["1"])
    assert type(out[1]) is nn.Conv2d and isinstance(out[0], BinaryConv2d)


def test_algorithm_instances_are_accepted():
    model = binarize(nn.Sequential(nn.Linear(3, 3)), get_algorithm("dorefa"), keep_first_last=False)
    assert model[0].algorithm.name == "dorefa"
