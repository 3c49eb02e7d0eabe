"""The 19 image corruptions of Hendrycks & Dietterich (2019) in both constant families."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image
from scipy import ndimage

from bibench.evaluation import corruptions as C

ALL = C.CORRUPTION_NAMES + C.EXTRA_CORRUPTIONS
DETERMINISTIC = ("defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "gaussian_blur", "saturate")


def scene(h: int = 32, w: int = 32, n: int = 1) -> torch.Tensor:
    """A natural-looking RGB test image: smooth gradients, a red disc and a green block."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * np.sin(6 * xx + 2 * yy)])
    img[:, (yy - 0.45) ** 2 + (xx - 0.35) ** 2 < 0.06] = np.array([0.9, 0.25, 0.15])[:, None]
    img[:, int(0.6 * h):int(0.85 * h), int(0.55 * w):int(0.9 * w)] = \
        np.array([0.1, 0.7, 0.3])[:, None, None]
    return torch.tensor(img, dtype=torch.float32)[None].repeat(n, 1, 1, 1)


def grey_scene(h: int = 28, w: int = 28, n: int = 1) -> torch.Tensor:
    return (scene(h, w, n) * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(
        1, keepdim=True)


def hsv(x: torch.Tensor) -> np.ndarray:
    return C._rgb2hsv(x.double().permute(0, 2, 3, 1).numpy())


# ------------------------------------------------------------------------------ registry
def test_names_and_registry():
    assert len(C.CORRUPTION_NAMES) == 15 and len(C.EXTRA_CORRUPTIONS) == 4
    assert set(C.CORRUPTIONS) == set(ALL) == set(C.CIFAR_C) == set(C.IMAGENET_C)
    for table in (C.CIFAR_C, C.IMAGENET_C):
        assert all(len(v) == 5 for v in table.values())
    assert C.GAUSSIAN_NOISE_CIFAR == (0.04, 0.06, 0.08, 0.09, 0.10)


def test_family_is_chosen_by_image_size():
    assert C.resolve_family("auto", 8, 8) == "cifar"
    assert C.resolve_family("auto", 28, 28) == "cifar"
    assert C.resolve_family("auto", 64, 64) == "cifar"
    assert C.resolve_family("auto", 65, 40) == "imagenet"
    assert C.resolve_family("imagenet", 32, 32) == "imagenet"
    with pytest.raises(ValueError, match="family"):
        C.resolve_family("tiny", 32, 32)


def test_bad_requests_are_named():
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="severity"):
        C.corrupt(x, "fog", 0)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        C.corrupt(torch.rand(2, 2, 8, 8), "fog", 1)
    with pytest.raises(TypeError, match="float"):
        C.corrupt(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), "fog", 1)
    with pytest.raises(KeyError, match="unknown corruption 'rain'"):
        C.corrupt(x, "rain", 1)
    with pytest.raises(ValueError, match="severity"):
        C.gaussian_noise(torch.zeros(1, 1, 2, 2), 6)
    assert C.corrupt(x[:0], "snow", 3).shape == (0, 3, 8, 8)


# --------------------------------------------------------------------- every cell runs
@pytest.mark.parametrize("name", ALL)
def test_every_severity_keeps_shape_dtype_range_and_is_seeded(name):
    rgb = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    grey = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    for x in (rgb, grey):
        for severity in range(1, 6):
            y = C.corrupt(x, name, severity)
            assert y.shape == x.shape and y.dtype == x.dtype
            assert torch.isfinite(y).all()
            assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
            assert torch.equal(y, C.corrupt(x, name, severity))  # same test set every cell
            assert torch.equal(y, C.CORRUPTIONS[name](x, severity, seed=0))
        assert not torch.equal(C.corrupt(x, name, 5), x)
    if name not in DETERMINISTIC:
        assert not torch.equal(C.corrupt(rgb, name, 3, seed=0), C.corrupt(rgb, name, 3, seed=1))


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (2, 3, 2, 2), (1, 3, 96, 80), (1, 1, 70, 70)])
def test_other_image_sizes_run(shape):
    x = torch.rand(shape, dtype=torch.float64)
    for name in ALL:
        y = C.corrupt(x, name, 5)
        assert y.shape == x.shape and y.dtype == torch.float64 and torch.isfinite(y).all()


# ---------------------------------------------------------------------- severity order
MONOTONE = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "defocus_blur",
            "motion_blur", "zoom_blur", "gaussian_blur", "contrast", "brightness",
            "jpeg_compression")


@pytest.mark.parametrize("family,size", [("cifar", 32), ("imagenet", 96)])
def test_severity_increases_the_change(family, size):
    # non-decreasing within 3% (motion blur's CIFAR severities 3 and 4 differ only in kernel
    # length at equal sigma), and stronger at 5 than at 1 by 20% at least
    x = scene(size, size, n=16 if family == "cifar" else 4)
    for name in MONOTONE:
        d = [float((C.corrupt(x, name, s, family=family) - x).abs().mean()) for s in range(1, 6)]
        assert all(b >= 0.97 * a for a, b in zip(d, d[1:], strict=False)), (name, d)
        assert d[4] > 1.2 * d[0], (name, d)


# -------------------------------------------------------------------------- constants
def test_gaussian_noise_std_is_the_constant_before_clipping():
    x = torch.full((64, 3, 32, 32), 0.5)
    # 196k samples; at 0.5 clipping needs > 4 sigma: all CIFAR-C and two ImageNet-C severities
    for family, severities in (("cifar", range(1, 6)), ("imagenet", (1, 2))):
        for s in severities:
            c = C.constants("gaussian_noise", s, family)
            d = C.corrupt(x, "gaussian_noise", s, family=family) - x
            assert abs(float(d.std()) - c) < 0.03 * c
    grey = torch.full((200, 1, 8, 8), 0.5)  # grey images: noise per pixel, same std
    assert abs(float((C.gaussian_noise(grey, 1) - grey).std()) - 0.04) < 0.004
    for severity, c in enumerate(C.GAUSSIAN_NOISE_CIFAR, start=1):
        assert abs(float((C.gaussian_noise(grey, severity) - grey).std()) - c) < 0.1 * c
    extreme = C.gaussian_noise(torch.ones(4, 1, 8, 8), 5)  # clipped to the valid range
    assert float(extreme.max()) <= 1.0 and float(extreme.min()) >= 0.0
    assert torch.equal(C.gaussian_noise(grey, 3), C.gaussian_noise(grey, 3))  # same every cell


def test_shot_impulse_and_speckle_noise_statistics():
    x = torch.full((64, 3, 32, 32), 0.4, dtype=torch.float64)
    for s in range(1, 6):
        c = C.CIFAR_C["shot_noise"][s - 1]  # Poisson(x c) / c: variance x / c
        var = float((C.shot_noise(x, s) - x).var())
        assert abs(var - 0.4 / c) < 0.05 * 0.4 / c
        c = C.CIFAR_C["impulse_noise"][s - 1]  # a fraction c of values set to 0 or 1
        y = C.impulse_noise(x, s)
        assert abs(float(((y == 0) | (y == 1)).double().mean()) - c) < 0.1 * c
        c = C.CIFAR_C["speckle_noise"][s - 1]  # x + x N(0, c^2)
        assert abs(float((C.speckle_noise(x, s) - x).std()) - 0.4 * c) < 0.03 * 0.4 * c


def test_brightness_shifts_hsv_value_and_saturate_scales_saturation():
    x = scene(32, 32) * 0.6  # V <= 0.6, so V + c stays below 1
    for s in range(1, 6):
        c = C.CIFAR_C["brightness"][s - 1]
        hv, hy = hsv(x), hsv(C.brightness(x, s))
        np.testing.assert_allclose(hy[..., 2], hv[..., 2] + c, atol=1e-6)
        np.testing.assert_allclose(hy[..., 1], hv[..., 1], atol=1e-5)
        a, b = C.CIFAR_C["saturate"][s - 1]
        hy = hsv(C.saturate(x, s))
        np.testing.assert_allclose(hy[..., 1], np.clip(hv[..., 1] * a + b, 0, 1), atol=1e-5)
    grey = grey_scene() * 0.5  # a grey image gets brighter by exactly c
    torch.testing.assert_close(C.brightness(grey, 5), grey + 0.3)


def test_contrast_blur_pixelate_and_jpeg_use_cifar_constants():
    x = scene(32, 32, n=2).double()
    arr = x.permute(0, 2, 3, 1).numpy()
    for s in range(1, 6):
        c = C.CIFAR_C["contrast"][s - 1]
        m = x.mean(dim=(2, 3), keepdim=True)
        torch.testing.assert_close(C.contrast(x, s), ((x - m) * c + m).clamp(0, 1))
        c = C.CIFAR_C["gaussian_blur"][s - 1]
        ref = ndimage.gaussian_filter(arr, (0, c, c, 0), mode="nearest")
        torch.testing.assert_close(C.gaussian_blur(x, s).permute(0, 2, 3, 1),
                                   torch.from_numpy(ref).clamp(0, 1))
        c = C.CIFAR_C["pixelate"][s - 1]
        img = Image.fromarray(arr[0, :, :, 0].astype(np.float32))
        ref = img.resize((int(32 * c),) * 2, Image.Resampling.BOX).resize(
            (32, 32), Image.Resampling.BOX)
        np.testing.assert_allclose(C.pixelate(x, s)[0, 0].numpy(), np.asarray(ref), atol=1e-6)
        q = C.CIFAR_C["jpeg_compression"][s - 1]
        buf = io.BytesIO()
        Image.fromarray(np.round(arr[0] * 255).astype(np.uint8)).save(buf, "JPEG", quality=q)
        ref = np.asarray(Image.open(buf), dtype=np.float64) / 255
        np.testing.assert_allclose(C.jpeg_compression(x, s)[0].permute(1, 2, 0).numpy(), ref)


def test_imagenet_family_uses_its_own_constants():
    x = torch.full((16, 3, 80, 80), 0.5)
    d = C.corrupt(x, "gaussian_noise", 1) - x  # auto: 80 px -> ImageNet-C, c = 0.08
    assert abs(float(d.std()) - 0.08) < 0.004
    d = C.corrupt(x[:, :, :32, :32], "gaussian_noise", 1, family="imagenet") - x[:, :, :32, :32]
    assert abs(float(d.std()) - 0.08) < 0.004


def test_motion_blur_kernel_follows_imagemagick():
    # a single bright pixel is smeared along one direction into the one-sided Gaussian taps
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[0, 0, 16, 16] = 1.0
    radius, sigma = C.CIFAR_C["motion_blur"][0]
    k = np.exp(-np.arange(2 * radius + 1) ** 2 / (2 * sigma**2))
    y = C.motion_blur(x, 1)[0, 0].numpy()
    assert y.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(np.sort(y[y > 1e-12])[::-1], (k / k.sum())[k / k.sum() > 1e-12])


def test_glass_blur_pixel_loop_matches_the_original_loop():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(3, 12, 10, 3)).astype(np.uint8)
    delta, iters = 2, 2
    shifts = rng.integers(-delta, delta, size=(iters, 12 - 4, 10 - 4, 2, 3))
    got = C._local_shuffle(x.copy(), delta, shifts)
    for n in range(3):
        ref = x[n].copy()
        for it in range(iters):
            for a, h in enumerate(range(12 - delta, delta, -1)):
                for b, w in enumerate(range(10 - delta, delta, -1)):
                    dx, dy = shifts[it, a, b, :, n]
                    hp, wp = h + dy, w + dx
                    ref[h, w], ref[hp, wp] = ref[hp, wp], ref[h, w]  # numpy views, as there
        np.testing.assert_array_equal(got[n], ref)


def test_grey_images_take_the_rgb_path_and_come_back_grey():
    grey = grey_scene()
    rgb = grey.repeat(1, 3, 1, 1)
    for name in DETERMINISTIC:
        for s in (1, 5):
            y = C.corrupt(rgb, name, s)
            luma = (y * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(1, keepdim=True)
            torch.testing.assert_close(C.corrupt(grey, name, s), luma, atol=1e-6, rtol=0)


def test_frost_images_come_from_a_package_or_the_bundled_copy(monkeypatch):
    assert all((C.frost_dir() / f).is_file() for f in C.FROST_FILES)
    monkeypatch.setattr(C.importlib.util, "find_spec", lambda name: None)
    assert C.frost_dir() == C.Path(C.__file__).parent / "frost"
    for s in range(1, 6):  # a black image shows the frost layer weighted by c[1]
        a, b = C.CIFAR_C["frost"][s - 1]
        y = C.frost(torch.zeros(8, 3, 32, 32), s)
        assert 0.05 * b < float(y.mean()) <= b


# ------------------------------------------------------------------ reference library
def test_imagenet_family_matches_imagecorruptions():
    ic = pytest.importorskip("imagecorruptions")  # needs cv2, numba, scikit-image
    x = scene(96, 96)
    u8 = np.round(x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    x = torch.from_numpy(u8 / 255.0).permute(2, 0, 1)[None].float()
    for name in DETERMINISTIC:
        for s in range(1, 6):
            ref = ic.corrupt(u8, corruption_name=name, severity=s) / 255.0
            got = C.corrupt(x, name, s).double()[0].permute(1, 2, 0).numpy()
            assert np.abs(ref - got).max() <= 1 / 255 + 1e-6, (name, s)  # theirs: np.uint8()
    from imagecorruptions import corruptions as icc
    a = np.random.default_rng(0).random((2, 40, 40, 3))
    for radius, sigma in C.IMAGENET_C["motion_blur"] + C.CIFAR_C["motion_blur"]:
        ang = np.array([-30.0, 80.0])
        ref = np.stack([icc._motion_blur(a[i], radius, sigma, ang[i]) for i in range(2)])
        np.testing.assert_allclose(C._motion_blur(a, radius, sigma, ang), ref, atol=1e-12)


# ---------------------------------------------------------------------------- timing
# How long corrupting takes against the inference it feeds is bench/corruptions.py's business
# (docs/measurements.md); here only what it prints.
def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "bench" / "corruptions.py"), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=600)


def test_bench_prints_each_corruption_against_the_clean_inference():
    proc = _bench("--images", "4", "--repeats", "1", "--threads", "1", "--corruptions",
                  "gaussian_noise", "frost", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["images"], result["input_shape"], result["severity"]) == (4, [1, 28, 28], 5)
    assert set(result["corruptions"]) == {"gaussian_noise", "frost"}
    assert result["inference_ms"] > 0
    for row in result["corruptions"].values():
        assert row["ratio_vs_inference"] == round(row["ms"] / result["inference_ms"], 2)
    proc = _bench("--corruptions", "gaussian_noise", "fog2")
    assert proc.returncode == 2 and "unknown corruption(s) fog2" in proc.stderr
