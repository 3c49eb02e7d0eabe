"""Every binarization algorithm against the paper's equations, on small hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bibench.algorithms import available, get_algorithm
from bibench.algorithms.base import (
    BinaryConv1d,
    BinaryConv2d,
    BinaryLinear,
    BinaryMatmul,
    hard_sign,
    input_shape_of,
    sign_clip_ste,
    sign_polynomial,
)
from bibench.algorithms.fda import fda_alpha, fda_n, fourier_sign, fourier_sign_grad
from bibench.algorithms.recu import recu_clamp, recu_tau
from bibench.algorithms.xnor import xnor_k_map
from bibench.binarize import binarize, binarized_layers, update_schedules
from bibench.data import load_dataset
from bibench.models import build_model, get_architecture

ALGORITHMS = ["bnn", "xnor", "dorefa", "bireal", "xnorpp", "reactnet", "recu", "fda"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_layer(algo: str, fp: nn.Module, example: torch.Tensor) -> nn.Module:
    """Binarize a lone layer (keep_first_last off) and return the binarized layer."""
    model = binarize(nn.Sequential(fp), algo, example_input=example, keep_first_last=False)
    return model[0]


# --------------------------------------------------------------------------------------------
# registry and declared facts
# --------------------------------------------------------------------------------------------


def test_all_eight_algorithms_are_registered():
    assert available() == sorted(ALGORITHMS)
    for name in ALGORITHMS:
        algo = get_algorithm(name)
        assert algo.name == name and algo.title and algo.reference


@pytest.mark.parametrize(
    ("name", "deployable", "granularity"),
    [
        ("bnn", True, "none"),
        ("xnor", False, "per-channel"),
        ("dorefa", True, "per-layer"),
        ("bireal", True, "per-channel"),
        ("xnorpp", False, "spatial"),
        ("reactnet", True, "per-channel"),
        ("recu", True, "per-channel"),
        ("fda", True, "per-channel"),
    ],
)
def test_deployment_facts_follow_table_4(name, deployable, granularity):
    facts = get_algorithm(name).deployment
    assert facts.deployable is deployable
    assert facts.weight_scale == granularity
    assert facts.activation_rescaling is (name == "xnor")
    assert facts.activation_mean_shift is (name == "reactnet")
    assert bool(facts.why_not_deployable) is (not deployable)


def test_extra_fp_params_and_ops():
    x = torch.randn(2, 4, 8, 8)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    out_shape = (6, 4, 4)
    assert input_shape_of(conv, out_shape) == (4, 8, 8)
    outputs = math.prod(out_shape)
    expected_params = {
        "bnn": 0,
        "xnor": 6,
        "dorefa": 1,
        "bireal": 6,
        "xnorpp": 6 + 4 + 4,
        "reactnet": 6 + 4,
        "recu": 6,
        "fda": 6,  # noise modules are training-only
    }
    for name, params in expected_params.items():
        layer = make_layer(name, conv, x)
        algo = layer.algorithm
        assert algo.extra_fp_params(layer) == params, name
        ops = algo.extra_fp_ops(layer, out_shape)
        if name == "bnn":
            assert ops == 0
        elif name == "reactnet":
            assert ops == 4 * 8 * 8 + outputs  # one add per input element + alpha
        elif name == "xnor":
            assert ops > 2 * outputs
        else:
            assert ops == outputs


# --------------------------------------------------------------------------------------------
# sign functions and their gradients (Eqs. 12, 16, 22)
# --------------------------------------------------------------------------------------------


def test_hard_sign_maps_zero_to_plus_one():
    x = torch.tensor([-2.0, -1e-30, -0.0, 0.0, 1e-30, 3.0])
    assert hard_sign(x).tolist() == [-1, -1, 1, 1, 1, 1]


def test_clip_ste_gradient():
    x = torch.tensor([-1.5, -1.0, -0.3, 0.0, 0.7, 1.0, 1.0001], requires_grad=True)
    sign_clip_ste(x).backward(torch.full_like(x, 2.0))
    assert x.grad.tolist() == [0, 2, 2, 2, 2, 2, 0]


def test_bireal_piecewise_polynomial_gradient():
    x = torch.tensor([-1.5, -1.0, -0.75, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0], requires_grad=True)
    y = sign_polynomial(x)
    assert y.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    y.sum().backward()
    # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere
    expected = [0.0, 0.0, 0.5, 1.0, 2.0, 1.5, 1.0, 0.0, 0.0]
    torch.testing.assert_close(x.grad, torch.tensor(expected))
    assert get_algorithm("bireal").activation_sign is not None
    z = x.detach().clone().requires_grad_()
    get_algorithm("bireal").activation_sign(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor(expected))


def explicit_fourier(x: torch.Tensor, n: int, omega: float = 0.1) -> torch.Tensor:
    total = sum(torch.cos((2 * i + 1) * omega * x) for i in range(n + 1))
    return 4 * omega / math.pi * total * (x.abs() <= 1)


@pytest.mark.parametrize("n", [9, 13, 17])
def test_fda_fourier_gradient_closed_form_equals_explicit_sum(n):
    x = torch.cat([torch.linspace(-1.5, 1.5, 301), torch.tensor([0.0, -0.0, 1e-9, -1e-7, 1.0])])
    x64 = x.double()
    g = torch.rand_like(x64) + 0.5
    torch.testing.assert_close(
        fourier_sign_grad(x64, g, n), g * explicit_fourier(x64, n), rtol=1e-12, atol=1e-12
    )
    xr = x.clone().requires_grad_()
    y = fourier_sign(xr, n)
    assert torch.equal(y, hard_sign(x))
    y.backward(g.float())
    torch.testing.assert_close(xr.grad, g.float() * explicit_fourier(x, n), rtol=1e-5, atol=1e-6)
    # at x = 0 the sum is n + 1 terms of cos(0)
    assert fourier_sign_grad(torch.zeros(1), torch.ones(1), n).item() == pytest.approx(
        0.4 / math.pi * (n + 1)
    )


def test_fda_schedules():
    assert fda_n(0, 100) == 9 and fda_n(50, 100) == 13 and fda_n(99, 100) == 17
    assert fda_n(100, 100) == 17  # capped
    assert fda_alpha(0, 100) == pytest.approx(0.05 * (1 + math.cos(math.pi / 100)))
    assert fda_alpha(49, 100) == pytest.approx(0.05)
    assert fda_alpha(99, 100) == pytest.approx(0.0, abs=1e-12)


def test_binary_matmul_uses_the_algorithms_sign_for_both_operands():
    a = torch.tensor([[0.5, -0.2]], requires_grad=True)
    b = torch.tensor([[0.3], [-2.0]], requires_grad=True)
    out = BinaryMatmul(get_algorithm("bireal"))(a, b)
    assert out.item() == 2.0  # (+1)(+1) + (-1)(-1)
    out.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------
# per-algorithm forward values
# --------------------------------------------------------------------------------------------


def test_xnor_channel_scales_and_k_map():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 4, 4)
    layer = make_layer("xnor", conv, x)
    w = conv.weight.detach()
    alpha = w.abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(layer.binary_weight(), torch.sign(w) * alpha.view(-1, 1, 1, 1))
    # K: channel-mean of |x| box-filtered over each 3x3 receptive field (zero padding)
    a = x.abs().mean(dim=1, keepdim=True)
    k = F.avg_pool2d(a, 3, stride=1, padding=1, count_include_pad=True)
    torch.testing.assert_close(xnor_k_map(layer, x), k)
    # hand check at the top-left corner: 4 real positions out of 9
    assert k[0, 0, 0, 0].item() == pytest.approx(a[0, 0, :2, :2].sum().item() / 9)
    expected = F.conv2d(hard_sign(x), torch.sign(w) * alpha.view(-1, 1, 1, 1), padding=1) * k
    torch.testing.assert_close(layer(x), expected)


def test_xnor_linear_uses_per_sample_mean_abs():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3, bias=False)
    x = torch.randn(4, 5)
    layer = make_layer("xnor", lin, x)
    w = lin.weight.detach()
    bw = torch.sign(w) * w.abs().mean(dim=1, keepdim=True)
    expected = F.linear(hard_sign(x), bw) * x.abs().mean(dim=1, keepdim=True)
    torch.testing.assert_close(layer(x), expected)


def test_dorefa_uses_one_scale_per_layer():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    layer = make_layer("dorefa", conv, torch.randn(1, 3, 5, 5))
    bw = layer.binary_weight()
    assert torch.allclose(bw.abs(), conv.weight.abs().mean().expand_as(bw))


@pytest.mark.parametrize(
    ("fp", "x", "shapes"),
    [
        (nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.randn(2, 3, 9, 7), (4, 5, 4)),
        (nn.Conv1d(3, 4, 3, stride=2), torch.randn(2, 3, 11), (4, 5)),
        (nn.Linear(6, 5), torch.randn(2, 6), (5,)),
    ],
)
def test_xnorpp_gamma_is_sized_from_the_real_output(fp, x, shapes):
    torch.manual_seed(0)
    layer = make_layer("xnorpp", fp, x)
    assert layer.alpha.shape == (shapes[0],)
    if len(shapes) > 1:
        assert layer.beta.shape == (shapes[1],)
    if len(shapes) > 2:
        assert layer.gamma.shape == (shapes[2],)
    else:
        assert not hasattr(layer, "gamma")
    assert all(
        torch.equal(p, torch.ones_like(p))
        for n, p in layer.named_parameters()
        if n in ("alpha", "beta", "gamma")
    )
    # random Gamma: the output is the binary product times alpha (x) beta (x) gamma
    with torch.no_grad():
        for name in ("alpha", "beta", "gamma"):
            if hasattr(layer, name):
                getattr(layer, name).uniform_(0.5, 2.0)
    gamma = layer.alpha
    if len(shapes) == 2:
        gamma = layer.alpha[:, None] * layer.beta
    elif len(shapes) == 3:
        gamma = layer.alpha[:, None, None] * layer.beta[:, None] * layer.gamma
    y = layer(x)
    assert y.shape == fp(x).shape
    sw = torch.sign(fp.weight.detach())
    if isinstance(fp, nn.Linear):
        ref = F.linear(hard_sign(x), sw)
    elif isinstance(fp, nn.Conv1d):
        ref = F.conv1d(hard_sign(x), sw, None, fp.stride, fp.padding)
    else:
        ref = F.conv2d(hard_sign(x), sw, None, fp.stride, fp.padding)
    torch.testing.assert_close(y, ref * gamma + fp.bias.view(-1, *([1] * (len(shapes) - 1))))
    y.backward(torch.randn_like(y))
    assert all(p.grad.abs().sum() > 0 for p in layer.parameters())


def test_xnorpp_requires_example_input():
    with pytest.raises(ValueError, match="example_input"):
        binarize(nn.Sequential(nn.Conv2d(1, 2, 3)), "xnorpp", keep_first_last=False)


@pytest.mark.parametrize("fp", [nn.Conv2d(2, 3, 1), nn.Linear(2, 3)])
def test_reactnet_threshold_shifts_the_sign_in_conv_and_linear(fp):
    x = torch.tensor([[0.3, -0.2]])
    x = x.view(1, 2, 1, 1) if isinstance(fp, nn.Conv2d) else x
    layer = make_layer("reactnet", fp, x)
    assert torch.equal(layer.threshold, torch.zeros(2))
    with torch.no_grad():
        layer.threshold.copy_(torch.tensor([0.5, -0.5]))
    b = layer.algorithm.binarize_input(layer, x)
    assert b.flatten().tolist() == [-1.0, 1.0]  # 0.3 - 0.5 < 0, -0.2 + 0.5 >= 0
    # gradient on the threshold: -(polynomial gradient) at x - b = -0.2 and 0.3
    layer.algorithm.binarize_input(layer, x).sum().backward()
    torch.testing.assert_close(layer.threshold.grad, torch.tensor([-1.6, -1.4]))


def test_recu_tau_schedule_first_middle_last():
    a = 0.14 / (math.e - 1)
    assert recu_tau(0, 10) == pytest.approx(0.85)
    assert recu_tau(5, 10) == pytest.approx(a * math.exp(0.5) + 0.85 - a)
    assert recu_tau(10, 10) == pytest.approx(0.99)
    assert recu_tau(30, 10) == pytest.approx(0.99)  # clipped: never tau >= 1
    model = binarize(nn.Sequential(nn.Linear(4, 4)), "recu", keep_first_last=False)
    assert model[0].tau == pytest.approx(0.85)
    update_schedules(model, 5, 10)
    assert model[0].tau == pytest.approx(a * math.exp(0.5) + 0.85 - a)
    update_schedules(model, 10, 10)
    assert model[0].tau == pytest.approx(0.99)


def test_recu_quantile_clamp_by_hand():
    w = torch.tensor([[1.0, 2.0, 3.0, 10.0]], requires_grad=True)
    # centred: [-3, -2, -1, 6]; population std sqrt(12.5); mean|w1| = 12 / 4 / sqrt(12.5)
    std = math.sqrt(12.5 + 1e-5)
    w1 = torch.tensor([-3.0, -2.0, -1.0, 6.0]) / std
    q = -w1.abs().mean().item() * math.log(2 - 2 * 0.85)
    out = recu_clamp(w, 0.85)
    torch.testing.assert_close(out, torch.clamp(w1, -q, q).view(1, 4))
    assert out[0, 3].item() == pytest.approx(q)  # 6/std = 1.697 > Q = 1.0216: clamped
    assert out[0, 0].item() == pytest.approx(-3 / std)  # -0.849 inside [-Q, Q]
    # identity STE + clamp: the clamped entry gets no gradient through the clamp itself
    w1_leaf = (w1.view(1, 4) * 1.0).requires_grad_()
    torch.clamp(w1_leaf, -q, q).sum().backward()
    assert w1_leaf.grad.tolist() == [[1.0, 1.0, 1.0, 0.0]]


def test_recu_quantiles_match_a_laplace_sample():
    torch.manual_seed(0)
    w = torch.distributions.Laplace(0.0, 1.0).sample((1, 200_000))
    tau = 0.9
    clamped = recu_clamp(w, tau)
    q = clamped.max().item()
    # Q(tau) of the standardised sample: a fraction tau of it lies below
    standardised = (w - w.mean()) / w.std(correction=0)
    assert (standardised <= q).float().mean().item() == pytest.approx(tau, abs=0.01)


def test_recu_binary_weight_and_alpha():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    layer = make_layer("recu", conv, torch.randn(1, 3, 5, 5))
    alpha0 = conv.weight.detach().abs().mean(dim=(1, 2, 3))
    torch.testing.assert_close(layer.alpha.detach(), alpha0)
    w = conv.weight.detach()
    balanced = torch.sign(w - w.mean(dim=(1, 2, 3), keepdim=True))
    torch.testing.assert_close(layer.binary_weight(), balanced * alpha0.view(-1, 1, 1, 1))


def test_fda_eval_is_a_pure_sign_layer_and_training_adds_noise():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    model = binarize(nn.Sequential(conv), "fda", example_input=x, keep_first_last=False)
    layer = model[0]
    update_schedules(model, 0, 10)
    assert layer.fourier_terms == 9 and layer.noise_alpha > 0
    w = conv.weight.detach()
    bw = torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
    model.eval()
    torch.testing.assert_close(layer(x), F.conv2d(hard_sign(x), bw, conv.bias, padding=1))
    model.train()
    assert not torch.allclose(layer(x), F.conv2d(hard_sign(x), bw, conv.bias, padding=1))
    update_schedules(model, 9, 10)
    assert layer.fourier_terms == 17 and layer.noise_alpha == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------------------
# layers honour every argument of the layer they replace
# --------------------------------------------------------------------------------------------


def binary_input(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The +-1 input, computed independently of the algorithm's code."""
    if hasattr(layer, "threshold"):
        shape = (1, -1) + (1,) * (x.dim() - 2) if x.dim() > 2 else (-1,)
        x = x - layer.threshold.detach().view(shape)
    return torch.where(x >= 0, 1.0, -1.0)


def reference_scale(layer: nn.Module, x: torch.Tensor, fp: nn.Module) -> torch.Tensor | float:
    conv = F.conv1d if x.dim() == 3 else F.conv2d
    if layer.algorithm.name == "xnor":
        g = fp.groups
        n, c = x.shape[:2]
        a = x.abs().view(n, g, c // g, *x.shape[2:]).mean(dim=2)
        box = torch.ones(g, 1, *fp.kernel_size) / math.prod(fp.kernel_size)
        k = conv(a, box, None, fp.stride, fp.padding, fp.dilation, g)
        return k.repeat_interleave(fp.out_channels // g, dim=1)
    if layer.algorithm.name == "xnorpp":
        if x.dim() == 3:
            return layer.beta.detach()
        return layer.beta.detach()[:, None] * layer.gamma.detach()
    return 1.0


def check_against_reference(algo: str, fp: nn.Module, x: torch.Tensor) -> None:
    layer = make_layer(algo, fp, x)
    layer.eval()
    with torch.no_grad():
        for name in ("threshold", "beta", "gamma"):
            if hasattr(layer, name):
                getattr(layer, name).uniform_(-0.3, 0.3)
    y = layer(x)
    assert y.shape == fp(x).shape
    conv = F.conv1d if x.dim() == 3 else F.conv2d
    bw = layer.binary_weight()
    ref = conv(binary_input(layer, x), bw, None, fp.stride, fp.padding, fp.dilation, fp.groups)
    ref = ref * reference_scale(layer, x, fp)
    if fp.bias is not None:
        ref = ref + fp.bias.detach().view(1, -1, *([1] * (x.dim() - 2)))
    torch.testing.assert_close(y, ref)


@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize(
    "fp",
    [
        nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=True),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=True),  # depthwise
        nn.Conv2d(4, 8, (1, 3), stride=(1, 2), bias=False),
    ],
)
def test_grouped_dilated_strided_conv_matches_reference(algo, fp):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 8)
    layer = make_layer(algo, fp, x)
    assert isinstance(layer, BinaryConv2d)
    check_against_reference(algo, fp, x)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_grouped_dilated_strided_conv1d_matches_reference(algo):
    torch.manual_seed(0)
    fp = nn.Conv1d(4, 6, 3, stride=2, padding=1, dilation=2, groups=2, bias=True)
    x = torch.randn(2, 4, 13)
    assert isinstance(make_layer(algo, fp, x), BinaryConv1d)
    check_against_reference(algo, fp, x)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_binary_weights_are_exactly_plus_minus_scale(algo):
    torch.manual_seed(0)
    fp = nn.Conv2d(3, 5, 3, groups=1)
    layer = make_layer(algo, fp, torch.randn(1, 3, 6, 6))
    layer.eval()
    bw = layer.binary_weight().flatten(1)
    for row in bw:
        assert torch.allclose(row.abs(), row.abs()[0].expand_as(row)), algo
    if algo == "bnn":
        assert set(bw.unique().tolist()) == {-1.0, 1.0}
    if algo == "dorefa":
        assert torch.allclose(bw.abs(), bw.abs()[0, 0].expand_as(bw))


# --------------------------------------------------------------------------------------------
# every learnable parameter trains
# --------------------------------------------------------------------------------------------


def assert_every_parameter_trains(model: nn.Module, x: torch.Tensor, algo: str) -> None:
    update_schedules(model, 0, 10)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    out = model(x)
    loss = out.square().mean() if out.dim() > 2 else F.cross_entropy(out, torch.arange(len(x)) % 2)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{algo}: {name} has no gradient"
        assert p.grad.abs().sum() > 0, f"{algo}: {name} has a zero gradient"
    opt.step()
    for name, p in model.named_parameters():
        assert not torch.equal(p, before[name]), f"{algo}: {name} did not change"


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_parameter_of_a_binarized_resnet20_gets_a_gradient(algo):
    torch.manual_seed(0)
    fp = build_model("resnet20", (1, 8, 8), 10)
    x = torch.randn(8, 1, 8, 8)
    keep_fp = get_architecture("resnet20").keep_fp
    model = binarize(fp, algo, example_input=x, keep_fp=keep_fp)
    assert len(list(binarized_layers(model))) == 18
    assert_every_parameter_trains(model, x, algo)


class TinyMixed(nn.Module):
    """Conv1d and Linear layers, the last ones binarized (first and last stay FP)."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv1d(2, 8, 3, padding=1)
        self.c1 = nn.Conv1d(8, 8, 3, padding=2, dilation=2, groups=2)
        self.bn = nn.BatchNorm1d(8)
        self.l1 = nn.Linear(8 * 10, 16)
        self.l2 = nn.Linear(16, 16)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.c1(torch.tanh(self.c0(x))))
        x = torch.tanh(self.l1(x.flatten(1)))
        return self.head(torch.tanh(self.l2(x)))


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_every_parameter_of_a_linear_conv1d_model_gets_a_gradient(algo):
    torch.manual_seed(0)
    x = torch.randn(8, 2, 10)
    model = binarize(TinyMixed(), algo, example_input=x)
    kinds = {type(m) for _, m in binarized_layers(model)}
    assert kinds == {BinaryConv1d, BinaryLinear}
    assert model(x).shape == (8, 2)
    assert_every_parameter_trains(model, x, algo)


# --------------------------------------------------------------------------------------------
# a binarized ResNet-20 learns on real digits
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits_embedded", max_train=512)
    return data.x_train, data.y_train


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_binarized_resnet20_training_loss_improves(algo, digits):
    torch.manual_seed(0)
    x, y = digits
    fp = build_model("resnet20", (1, 8, 8), 10)
    keep_fp = get_architecture("resnet20").keep_fp
    model = binarize(fp, algo, example_input=x[:2], keep_fp=keep_fp)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    epochs, batch = 3, 64
    losses = []
    for epoch in range(epochs):
        update_schedules(model, epoch, epochs)
        model.train()
        perm = torch.randperm(len(x))
        total = 0.0
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            assert torch.isfinite(loss), f"{algo}: loss is {loss}"
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(x))
    assert losses[-1] < losses[0], f"{algo}: losses {losses}"
    model.eval()
    with torch.no_grad():
        predictions = model(x).argmax(dim=1)
    assert predictions.unique().numel() > 1, f"{algo}: predictions collapsed to one class"
