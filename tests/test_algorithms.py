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


def test_hard_sign_maps_zero_to_plus_one_and_keeps_nan():
    x = torch.tensor([-2.0, -1e-30, -1e-45, -0.0, 0.0, 1e-45, 1e-30, 3.0, 3e38, -3e38])
    assert hard_sign(x).tolist() == [-1, -1, -1, 1, 1, 1, 1, 1, 1, -1]
    diverged = hard_sign(torch.tensor([math.nan, -math.nan, math.inf, -math.inf, 1.0]))
    assert diverged.isnan().tolist() == [True, True, True, True, False]


def test_clip_ste_gradient_is_the_open_interval_of_eq_12():
    x = torch.tensor([-1.5, -1.0, -0.9999, -0.3, 0.0, 0.7, 0.9999, 1.0, 1.0001], requires_grad=True)
    sign_clip_ste(x).backward(torch.full_like(x, 2.0))
    assert x.grad.tolist() == [0, 0, 2, 2, 2, 2, 2, 0, 0]


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_nan_from_a_full_precision_layer_reaches_the_output(algo):
    """A diverged FP layer must not be binarized away: the loss check has to see the NaN."""
    torch.manual_seed(0)
    fp = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 3))
    x = torch.randn(3, 4)
    model = binarize(fp, algo, example_input=x)
    assert isinstance(model[1], BinaryLinear)
    with torch.no_grad():
        model[0].weight[2, 0] = math.nan  # first-layer output feature 2 is NaN where x[:, 0] != 0
    for training in (True, False):
        model.train(training)
        out = model(x)
        assert out.isnan().all(), (algo, training)


def test_bireal_piecewise_polynomial_gradient():
    x = torch.tensor([-1.5, -1.0, -0.75, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0], requires_grad=True)
    y = sign_polynomial(x)
    assert y.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    y.sum().backward()
    # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 elsewhere
    expected = [0.0, 0.0, 0.5, 1.0, 2.0, 1.5, 1.0, 0.0, 0.0]
    torch.testing.assert_close(x.grad, torch.tensor(expected))
    z = x.detach().clone().requires_grad_()
    get_algorithm("bireal").activation_sign(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor(expected))


def explicit_fourier(x: torch.Tensor, n: int, omega: float = 0.1) -> torch.Tensor:
    """Eq. 22's sign term as an explicit sum, zero outside [-1, 1] (the authors' window)."""
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
    # d/da_j = sign(b_j) (2 - 2|a_j|); d/db_j = sign(a_j) max(0, 2 - 2|b_j|)
    torch.testing.assert_close(a.grad, torch.tensor([[1.0, -1.6]]))
    torch.testing.assert_close(b.grad, torch.tensor([[1.4], [0.0]]))


# --------------------------------------------------------------------------------------------
# every algorithm on one fixed small tensor: binary weight, weight and activation gradients
# --------------------------------------------------------------------------------------------

# A 2 x 1 x 2 x 2 conv weight, with 0 (sign +1) and +-1 (where clip-STE passes nothing).
W = torch.tensor([[0.5, -0.125, 0.0, -1.0], [2.0, -0.5, 1.0, 0.75]]).view(2, 1, 2, 2)
SIGN_W = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0]])
# ReCU binarizes w - mean(w) per channel: channel means -0.15625 and 0.8125
SIGN_BALANCED = torch.tensor([[1.0, 1.0, 1.0, -1.0], [1.0, -1.0, 1.0, -1.0]])
CHANNEL_MEAN_ABS = torch.tensor([[1.625 / 4], [4.25 / 4]])
LAYER_MEAN_ABS = 5.875 / 8
XNORPP_ALPHA = torch.tensor([[0.3], [0.7]])
STE_MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])  # |w| < 1
# (binary weight, scale) per algorithm, as paper Table 6 defines the weight scale
EXPECTED_WEIGHT = {
    "bnn": (SIGN_W, torch.ones(2, 1)),
    "xnor": (SIGN_W, CHANNEL_MEAN_ABS),
    "dorefa": (SIGN_W, torch.full((2, 1), LAYER_MEAN_ABS)),
    "bireal": (SIGN_W, CHANNEL_MEAN_ABS),
    "xnorpp": (SIGN_W, XNORPP_ALPHA),
    "reactnet": (SIGN_W, CHANNEL_MEAN_ABS),
    "recu": (SIGN_BALANCED, CHANNEL_MEAN_ABS),
    "fda": (SIGN_W, CHANNEL_MEAN_ABS),
}
POINTS = torch.tensor([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])
CLIP = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # Eq. 12: (-1, 1)
POLYNOMIAL = [0.0, 0.0, 1.0, 2.0, 1.0, 0.0, 0.0]  # Eq. 16: max(0, 2 - 2|x|)


EXPECTED_ACTIVATION_GRAD = {
    "bnn": CLIP, "xnor": CLIP, "dorefa": CLIP, "xnorpp": CLIP,
    "bireal": POLYNOMIAL, "reactnet": POLYNOMIAL, "recu": POLYNOMIAL,
    "fda": explicit_fourier(POINTS.double(), 9).float().tolist(),
}


def fixed_layer(algo: str) -> nn.Module:
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(W)
    layer = make_layer(algo, conv, torch.zeros(1, 1, 3, 3))
    if algo == "xnorpp":
        with torch.no_grad():
            layer.alpha.copy_(XNORPP_ALPHA.flatten())
    return layer.eval()  # FDA's training-only noise is checked against Eqs. 22-23 below


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_binary_weight_is_sign_times_the_tables_scale(algo):
    signs, scale = EXPECTED_WEIGHT[algo]
    layer = fixed_layer(algo)
    torch.testing.assert_close(layer.binary_weight().view(2, 4), signs * scale)


@pytest.mark.parametrize("algo", [a for a in ALGORITHMS if a != "recu"])  # recu: see below
def test_weight_gradient_is_the_ste_mask_times_the_scale(algo):
    _, scale = EXPECTED_WEIGHT[algo]
    layer = fixed_layer(algo)
    w = W.clone().requires_grad_()
    upstream = torch.arange(1.0, 9.0).view(2, 1, 2, 2)
    layer.algorithm.binarize_weight(layer, w).backward(upstream)
    mask = STE_MASK
    if algo == "fda":  # Fourier gradient on the closed window [-1, 1]
        mask = explicit_fourier(W.view(2, 4).double(), 9).float()
    torch.testing.assert_close(w.grad.view(2, 4), upstream.view(2, 4) * mask * scale)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_activation_gradient_is_the_papers_approximation(algo):
    layer = fixed_layer(algo)
    x = POINTS.view(1, 1, 7, 1).clone().requires_grad_()
    b = layer.algorithm.binarize_input(layer, x)
    assert b.flatten().tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    b.backward(torch.ones_like(b))
    torch.testing.assert_close(x.grad.flatten(), torch.tensor(EXPECTED_ACTIVATION_GRAD[algo]))


# --------------------------------------------------------------------------------------------
# per-algorithm forward values
# --------------------------------------------------------------------------------------------


def unfold_k_map(fp: nn.Conv1d | nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Eq. 14's K from the receptive fields themselves: the mean of |a| over each field's
    C_in/groups x k x k inputs (zero padding counted), one map per group of output channels.
    A Conv1d is treated as a Conv2d of width 1."""
    one_d = x.dim() == 3
    pad1 = (lambda t: (*t, 1)) if one_d else (lambda t: t)
    kernel, dilation, stride = pad1(fp.kernel_size), pad1(fp.dilation), pad1(fp.stride)
    padding = (*fp.padding, 0) if one_d else fp.padding
    x2 = x.unsqueeze(-1) if one_d else x
    n, g = x.shape[0], fp.groups
    fields = F.unfold(x2.abs(), kernel, dilation, padding, stride)
    k = fields.view(n, g, -1, fields.shape[-1]).mean(dim=2)  # (N, G, positions)
    h = (x2.shape[2] + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    k = k.view(n, g, h, -1).repeat_interleave(fp.out_channels // g, dim=1)
    return k.squeeze(-1) if one_d else k


@pytest.mark.parametrize(
    "fp",
    [
        nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False),
        nn.Conv2d(4, 4, (3, 2), stride=(1, 2), padding=1, groups=4, bias=False),
        nn.Conv2d(2, 3, 3, padding=1, bias=False),
    ],
)
def test_xnor_k_map_against_unfolded_receptive_fields(fp):
    torch.manual_seed(0)
    x = torch.randn(2, fp.in_channels, 9, 8)
    layer = make_layer("xnor", fp, x)
    k = unfold_k_map(fp, x)
    torch.testing.assert_close(xnor_k_map(layer, x).expand_as(k), k)
    if fp.groups == 1:  # hand check at the top-left corner: 4 real positions out of 9
        a = x.abs().mean(dim=1)
        assert k[0, 0, 0, 0].item() == pytest.approx(a[0, :2, :2].sum().item() / 9)
    w = fp.weight.detach()
    bw = torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
    expected = F.conv2d(torch.where(x >= 0, 1.0, -1.0), bw, None, fp.stride, fp.padding,
                        fp.dilation, fp.groups) * k
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


def test_dorefa_scale_is_one_per_layer_as_table_6_defines_it():
    """Table 6 (the operator): "statistics by layer". Table 4 (deployment) says channel-wise,
    how an engine stores any foldable scale; the authors' code is per channel (docs)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    layer = make_layer("dorefa", conv, torch.randn(1, 3, 5, 5))
    bw = layer.binary_weight()
    w = conv.weight.detach()
    torch.testing.assert_close(bw, torch.sign(w) * w.abs().mean())
    assert bw.abs().unique().numel() == 1


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
    assert recu_tau(99, 100) == pytest.approx(0.9878, abs=1e-4)  # last epoch of 100
    assert recu_tau(30, 10) == pytest.approx(0.99)  # clipped: never tau >= 1
    model = binarize(nn.Sequential(nn.Linear(4, 4)), "recu", keep_first_last=False)
    assert model[0].tau.item() == pytest.approx(0.85)
    update_schedules(model, 5, 10)
    assert model[0].tau.item() == pytest.approx(a * math.exp(0.5) + 0.85 - a)
    update_schedules(model, 10, 10)
    assert model[0].tau.item() == pytest.approx(0.99)


def standardisation_jacobian(w: torch.Tensor) -> torch.Tensor:
    """d w1_j / d w_i of w1 = 2 sqrt 2 (w - mean) / sqrt(unbiased var + 1e-5), one channel,
    derived by hand: c ((delta_ij - 1/n) / s - w0_i w0_j / ((n - 1) s^3))."""
    n = w.numel()
    w0 = w - w.mean()
    s = math.sqrt(float((w0 * w0).sum()) / (n - 1) + 1e-5)
    c = 2 * math.sqrt(2)
    return c * ((torch.eye(n) - 1.0 / n) / s - torch.outer(w0, w0) / ((n - 1) * s**3))


def test_recu_clamp_and_its_gradient_by_hand():
    w = torch.tensor([[1.0, 2.0, 3.0, 10.0]], requires_grad=True)
    # centred [-3, -2, -1, 6]; unbiased variance 50/3; w1 = 2 sqrt 2 w0 / sqrt(50/3 + 1e-5)
    s = math.sqrt(50 / 3 + 1e-5)
    w1 = 2 * math.sqrt(2) * torch.tensor([-3.0, -2.0, -1.0, 6.0]) / s
    q = -math.log(2 - 2 * 0.85) * w1.abs().mean().item()  # 3.61 x 2 sqrt 2 / s = 2.50
    out = recu_clamp(w, 0.85)
    torch.testing.assert_close(out, torch.clamp(w1, -q, q).view(1, 4))
    assert out[0, 3].item() == pytest.approx(q)  # 6 c / s = 4.16 > Q: clamped
    assert out[0, 0].item() == pytest.approx(-3 * 2 * math.sqrt(2) / s)  # inside [-Q, Q]
    upstream = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out.backward(upstream)
    inside = torch.tensor([1.0, 1.0, 1.0, 0.0])  # the clamp passes nothing where it clamps
    expected = standardisation_jacobian(w.detach()[0]) @ (upstream[0] * inside)
    torch.testing.assert_close(w.grad[0], expected)


def test_recu_weight_gradient_through_the_layer_is_the_clamp_mask_times_the_scale():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3, bias=False)
    layer = make_layer("recu", lin, torch.randn(2, 6))
    update_schedules(nn.Sequential(layer), 0, 10)
    w = lin.weight.detach().clone().requires_grad_()
    upstream = torch.randn(3, 6)
    layer.algorithm.binarize_weight(layer, w).backward(upstream)
    alpha = w.detach().abs().mean(dim=1)
    w0 = w.detach() - w.detach().mean(dim=1, keepdim=True)
    w1 = 2 * math.sqrt(2) * w0 / (w0.square().sum(dim=1, keepdim=True) / 5 + 1e-5).sqrt()
    q = -math.log(2 - 2 * 0.85) * w1.abs().mean()
    inside = (w1.abs() <= q).float()
    assert 0 < inside.sum() < inside.numel()  # some clamped, some not
    for row in range(3):
        expected = standardisation_jacobian(w.detach()[row]) @ (upstream[row] * inside[row])
        torch.testing.assert_close(w.grad[row], expected * alpha[row])


def test_recu_quantiles_match_a_laplace_sample():
    torch.manual_seed(0)
    w = torch.distributions.Laplace(0.0, 1.0).sample((1, 200_000))
    tau = 0.9
    clamped = recu_clamp(w, tau)
    q = clamped.max().item()
    # Q(tau) of the standardised sample: a fraction tau of it lies below
    standardised = 2 * math.sqrt(2) * (w - w.mean()) / w.std()
    assert (standardised <= q).float().mean().item() == pytest.approx(tau, abs=0.01)


def test_fda_eval_is_a_pure_sign_layer_and_training_adds_noise():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 5, 5)
    model = binarize(nn.Sequential(conv), "fda", example_input=x, keep_first_last=False)
    layer = model[0]
    update_schedules(model, 0, 10)
    assert layer.fourier_terms.item() == 9 and layer.noise_alpha.item() > 0
    w = conv.weight.detach()
    bw = torch.sign(w) * w.abs().mean(dim=(1, 2, 3), keepdim=True)
    model.eval()
    torch.testing.assert_close(layer(x), F.conv2d(hard_sign(x), bw, conv.bias, padding=1))
    model.train()
    assert not torch.allclose(layer(x), F.conv2d(hard_sign(x), bw, conv.bias, padding=1))
    update_schedules(model, 9, 10)
    assert layer.fourier_terms.item() == 17
    assert layer.noise_alpha.item() == pytest.approx(0.0, abs=1e-7)


def test_fda_noise_path_follows_eqs_22_and_23_with_known_weights():
    """t -> sign(t) + alpha (ReLU(t w1) w2 + 0.1 sin t); gradients of Eqs. 22-23 (times the
    authors' alpha), with the Fourier term of the sign."""
    layer = make_layer("fda", nn.Linear(4, 2, bias=False), torch.zeros(2, 4))
    mlp = layer.input_noise
    assert mlp.fc1.bias is None and mlp.fc2.bias is None  # Eqs. 22-23 have no biases
    w1 = torch.tensor([[0.5], [-1.0], [0.25], [2.0]])  # d x hidden (d // 64 -> 1)
    w2 = torch.tensor([[1.0, -2.0, 0.5, 3.0]])  # hidden x d
    with torch.no_grad():
        mlp.fc1.weight.copy_(w1.t())
        mlp.fc2.weight.copy_(w2.t())
        layer.noise_alpha.fill_(0.08)
    alpha = 0.08
    t = torch.tensor([[0.3, -0.4, 1.5, 0.2], [-0.6, 0.9, -0.1, -0.3]], requires_grad=True)
    pre = t.detach() @ w1  # [[0.975], [-1.525]]: one row on, one off
    layer.train()
    out = layer.algorithm.binarize_input(layer, t)
    sign = torch.where(t.detach() >= 0, 1.0, -1.0)
    torch.testing.assert_close(
        out, sign + alpha * (torch.relu(pre) @ w2 + 0.1 * torch.sin(t.detach())))
    g = torch.tensor([[1.0, -1.0, 2.0, 0.5], [0.25, 3.0, -2.0, 1.0]])
    out.backward(g)
    on = (pre >= 0).float()
    fourier = explicit_fourier(t.detach().double(), 9).float()
    grad_t = alpha * ((g @ w2.t()) * on) @ w1.t() + alpha * g * 0.1 * torch.cos(t.detach()) \
        + g * fourier
    torch.testing.assert_close(t.grad, grad_t)
    grad_w1 = alpha * t.detach().t() @ ((g @ w2.t()) * on)
    torch.testing.assert_close(mlp.fc1.weight.grad, grad_w1.t())
    torch.testing.assert_close(mlp.fc2.weight.grad, alpha * (torch.relu(pre).t() @ g).t())


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
    if layer.algorithm.name == "xnor":
        return unfold_k_map(fp, x)
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
