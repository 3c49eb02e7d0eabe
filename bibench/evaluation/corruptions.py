"""Image corruptions at five severities (Hendrycks & Dietterich, ICLR 2019).

The 15 benchmark corruptions (`CORRUPTION_NAMES`) and the 4 extra ones (`EXTRA_CORRUPTIONS`)
of ImageNet-C / CIFAR-10-C, for float tensors in [0, 1] of shape (N, C, H, W), C = 1 or 3, any
size. Two families of severity constants exist:

* "cifar": Hendrycks' ``make_cifar_c.py`` (CIFAR-10-C, 32x32 images);
* "imagenet": ImageNet-C as generalised to any image size by the ``imagecorruptions`` package
  (bethgelab; the ``imagecorruptions-imaug`` fork 1.1.5 is the reference read here).

``family="auto"`` picks "cifar" for images whose long side is at most `CIFAR_MAX_SIDE` pixels and
"imagenet" above. Both families run the same numpy/scipy/Pillow (and OpenCV, imported lazily)
code, batched over the images; docs/corruptions.md lists constants, sources and deviations.

Grey images go through the RGB path as three equal channels and come back as one channel by
ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B), which returns the grey value exactly whenever the
three channels stay equal. Per-pixel noise is drawn per input channel, so a grey image stays grey.

Randomness comes from a numpy generator seeded per (seed, corruption, severity), so every cell
of the benchmark sees the same corrupted test set.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from torch import Tensor

CORRUPTION_NAMES: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
FAMILIES: tuple[str, ...] = ("auto", "cifar", "imagenet")
CIFAR_MAX_SIDE = 64  # family="auto": CIFAR-10-C constants up to this long side, ImageNet-C above

# ------------------------------------------------------------------------------- constants
# make_cifar_c.py (hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py), verbatim.
# zoom_blur: np.arange(start, stop, step) arguments; elastic_transform: fractions of IMSIZE
# (= 32 there, the image's short side here) for (alpha, sigma, affine jitter).
CIFAR_C: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
    # (sigma, max_delta, iterations)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (disk radius, alias blur)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (radius, sigma) of ImageMagick's MotionBlurImage
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01),
                  (1, 1.26, 0.01)),
    # (loc, scale, zoom, threshold, blur radius, blur sigma, blend)
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    # (image weight, frost weight)
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    # (fractal weight, wibble decay)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                          (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    # (loc, scale, sigma, threshold, intensity, mud?)
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    # (saturation factor, saturation shift)
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}

# imagecorruptions(-imaug) 1.1.5 corruptions.py, verbatim (ImageNet-C constants, any size).
# elastic_transform: alpha (sigma = 0.01 x size and displacement 0.005 x height are fixed).
IMAGENET_C: dict[str, tuple[Any, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02),
                  (1, 1.31, 0.03)),
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
             (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
             (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "fog": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "elastic_transform": (250 * 0.05, 250 * 0.065, 250 * 0.085, 250 * 0.1, 250 * 0.12),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
                (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
                (0.67, 0.4, 1, 0.65, 1.5, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
}

GAUSSIAN_NOISE_CIFAR = CIFAR_C["gaussian_noise"]

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as cv2.COLOR_RGB2GRAY and PIL "L"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg",
               "frost6.jpg")


# --------------------------------------------------------------------------------- helpers
def _rgb(x: np.ndarray) -> np.ndarray:
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _luma(x: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...,)"""
    return x @ _LUMA


def _gauss(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0
           ) -> np.ndarray:
    """skimage.filters.gaussian over the two image axes of (N, H, W[, C])."""
    sig = (0, sigma, sigma) + (0,) * (x.ndim - 3)
    return ndimage.gaussian_filter(x, sig, mode=mode, truncate=truncate)


def _rgb2hsv(rgb: np.ndarray) -> np.ndarray:
    """Port of skimage.color.rgb2hsv (same tie-breaking)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta == 0, 0.0, delta / v)
        h = np.zeros_like(v)
        h = np.where(r == v, (g - b) / delta, h)
        h = np.where(g == v, 2.0 + (b - r) / delta, h)
        h = np.where(b == v, 4.0 + (r - g) / delta, h)
    h = np.where(delta == 0, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def _hsv2rgb(hsv: np.ndarray) -> np.ndarray:
    """Port of skimage.color.hsv2rgb."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    hi = np.floor(h * 6)
    f = h * 6 - hi
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    hi = hi.astype(np.int64) % 6
    return np.stack([np.choose(hi, [v, q, p, p, t, v]), np.choose(hi, [t, v, v, q, p, p]),
                     np.choose(hi, [p, p, t, v, v, q])], axis=-1)


@functools.lru_cache(maxsize=256)
def _zoom_matrix(n: int, zoom: float) -> np.ndarray:
    """scipy.ndimage.zoom(order=1) along one axis of length n, as a (round(n zoom), n) matrix.

    Linear interpolation is separable, so zooming both image axes with these matrices equals
    ndimage.zoom on the images (up to rounding) at a fraction of its cost.
    """
    return ndimage.zoom(np.eye(n), (zoom, 1), order=1)


def _clipped_zoom(a: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom the centre of each image of (N, H, W[, C]) by `zoom`, cropped back to (H, W)."""
    h, w = a.shape[1:3]
    ch, cw = int(np.ceil(h / zoom)), int(np.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    ah, aw = _zoom_matrix(ch, zoom), _zoom_matrix(cw, zoom)
    th, tw = (ah.shape[0] - h) // 2, (aw.shape[0] - w) // 2
    ah, aw = ah[th:th + h], aw[tw:tw + w]  # trim the extra output pixels, centred
    crop = a[:, top:top + ch, left:left + cw]
    # batched matrix products over the image axes (torch's bmm is BLAS-backed at any size)
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(crop, (1, 2), (-2, -1))))
    t = torch.from_numpy(ah) @ t @ torch.from_numpy(np.ascontiguousarray(aw.T))
    return np.moveaxis(t.numpy(), (-2, -1), (1, 2))


def _motion_blur(a: np.ndarray, radius: int, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's MotionBlurImage as imagecorruptions rewrote it in numpy, batched.

    a: (N, H, W[, C]); angles: (N,) degrees. A one-sided Gaussian kernel of width 2 radius + 1
    along the angle; shifted copies replicate the edge; a tap whose shift leaves the image
    ends the kernel for that image (without renormalising, as there).
    """
    n, h, w = a.shape[:3]
    width = 2 * int(radius) + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    k /= k.sum()
    p0 = width * np.sin(np.deg2rad(angles))
    p1 = width * np.cos(np.deg2rad(angles))
    hyp = np.hypot(p0, p1)
    idx = np.arange(n)[:, None, None]
    alive = np.ones(n, dtype=bool)
    out = np.zeros_like(a, dtype=np.float64)
    extra = (None,) * (a.ndim - 3)
    for i in range(width):
        dy = -np.ceil(i * p0 / hyp - 0.5).astype(np.int64)
        dx = -np.ceil(i * p1 / hyp - 0.5).astype(np.int64)
        alive &= (np.abs(dy) < h) & (np.abs(dx) < w)
        if not alive.any():
            break
        rows = np.clip(np.arange(h)[None, :] - dy[:, None], 0, h - 1)
        cols = np.clip(np.arange(w)[None, :] - dx[:, None], 0, w - 1)
        shifted = a[idx, rows[:, :, None], cols[:, None, :]]
        out += (k[i] * alive)[(slice(None), None, None) + extra] * shifted
    return out


def _plasma_fractal(rng: np.random.Generator, n: int, mapsize: int, wibbledecay: float
                    ) -> np.ndarray:
    """Diamond-square height maps (N, mapsize, mapsize) in [0, 1] (make_cifar_c's, batched)."""
    m = np.zeros((n, mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled_mean(arr: np.ndarray) -> np.ndarray:
        return arr / 4 + wibble * rng.uniform(-wibble, wibble, arr.shape)

    while step >= 2:
        half = step // 2
        corner = m[:, 0:mapsize:step, 0:mapsize:step]
        sq = corner + np.roll(corner, -1, axis=1)
        sq += np.roll(sq, -1, axis=2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(sq)
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        lt = dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=2)
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(lt)
        tt = dr + np.roll(dr, 1, axis=2) + ul + np.roll(ul, -1, axis=1)
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(tt)
        step //= 2
        wibble /= wibbledecay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def _next_pow2(v: int) -> int:
    return 1 if v <= 1 else 2 ** (int(v) - 1).bit_length()


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("this corruption needs OpenCV: pip install opencv-python-headless"
                          ) from e
    return cv2


def frost_dir() -> Path:
    """Folder of the six frost images of ImageNet-C.

    Read from the installed ``imagecorruptions`` package (either distribution; located without
    importing it, which would import numba/cv2), else from the copy in bibench/evaluation/frost.
    """
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is not None and spec.origin:
        d = Path(spec.origin).parent / "frost"
        if all((d / f).is_file() for f in FROST_FILES):
            return d
    d = Path(__file__).parent / "frost"
    if all((d / f).is_file() for f in FROST_FILES):
        return d
    raise FileNotFoundError(
        "frost needs the ImageNet-C frost images: pip install --no-deps imagecorruptions-imaug "
        "(or imagecorruptions), or keep bibench/evaluation/frost/")


@functools.cache
def _frost_bgr(idx: int) -> np.ndarray:
    img = _cv2().imread(str(frost_dir() / FROST_FILES[idx]))  # BGR uint8, alpha dropped
    if img is None:
        raise OSError(f"cannot read frost image {FROST_FILES[idx]}")
    return img


@functools.lru_cache(maxsize=64)
def _frost_layer(idx: int, family: str, h: int, w: int) -> np.ndarray:
    """The frost image resized as each family does, RGB float in [0, 1], at least (h+1, w+1)."""
    cv2 = _cv2()
    img = _frost_bgr(idx)
    if family == "cifar":  # make_cifar_c: cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)
        img = cv2.resize(img, (0, 0), fx=0.2, fy=0.2)
        if img.shape[0] <= h or img.shape[1] <= w:  # only for images larger than CIFAR's
            s = 1.1 * max(h / img.shape[0], w / img.shape[1])
            img = cv2.resize(img, (math.ceil(img.shape[1] * s), math.ceil(img.shape[0] * s)),
                             interpolation=cv2.INTER_CUBIC)
    else:  # imagecorruptions: upscale to cover the image, always by a further 1.1
        fh, fw = img.shape[:2]
        s = 1.0
        if fh < h or fw < w:
            s = max(h / fh, w / fw)
        s *= 1.1
        img = cv2.resize(img, (math.ceil(fw * s), math.ceil(fh * s)),
                         interpolation=cv2.INTER_CUBIC)
    return img[..., ::-1].astype(np.float64) / 255.0


# ----------------------------------------------------------------------------- corruptions
# Each takes x (N, H, W, C) float64 in [0, 1], C = 1 or 3, the severity's parameters, the
# generator and the resolved family; returns (N, H, W, C) or (N, H, W, 3), clipped later.

def _gaussian_noise(x, c, rng, fam):
    return x + rng.normal(0.0, c, x.shape)


def _shot_noise(x, c, rng, fam):
    return rng.poisson(x * c) / float(c)


def _impulse_noise(x, c, rng, fam):
    # skimage.util.random_noise(mode="s&p", amount=c, salt_vs_pepper=0.5)
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salted] = 1.0
    out[flipped & ~salted] = 0.0
    return out


def _speckle_noise(x, c, rng, fam):
    return x + x * rng.normal(0.0, c, x.shape)


def _gaussian_blur(x, c, rng, fam):
    return _gauss(x, c)


def _local_shuffle(x: np.ndarray, delta: int, shifts: np.ndarray) -> np.ndarray:
    """Glass blur's pixel loop, in place on (N, H, W, C); shifts (iters, #h, #w, 2, N) of (dx, dy).

    make_cifar_c visits h = H - delta .. delta + 1 (and w alike), downwards, and runs
    x[h, w], x[h', w'] = x[h', w'], x[h, w] on numpy views of pixels: that copies x[h', w'] into
    x[h, w] and leaves x[h', w'] as it was. Reproduced exactly, sequential over positions and
    vectorised over the batch.
    """
    n, h, w = x.shape[:3]
    idx = np.arange(n)
    for it in range(shifts.shape[0]):
        for a, hh in enumerate(range(h - delta, delta, -1)):
            for b, ww in enumerate(range(w - delta, delta, -1)):
                dx, dy = shifts[it, a, b]
                x[idx, hh, ww] = x[idx, hh + dy, ww + dx]
    return x


def _glass_blur(x, c, rng, fam):
    sigma, delta, iterations = c
    x = (np.clip(_gauss(x, sigma), 0, 1) * 255).astype(np.uint8)  # np.uint8(... * 255)
    n, h, w = x.shape[:3]
    size = (iterations, max(h - 2 * delta, 0), max(w - 2 * delta, 0), 2, n)
    x = _local_shuffle(x, delta, rng.integers(-delta, delta, size=size))
    return _gauss(x / 255.0, sigma)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    cv2 = _cv2()
    if radius <= 8:
        coords, ksize = np.arange(-8, 8 + 1), (3, 3)
    else:
        coords, ksize = np.arange(-radius, radius + 1), (5, 5)
    xx, yy = np.meshgrid(coords, coords)
    aliased = np.array((xx**2 + yy**2) <= radius**2, dtype=np.float32)
    aliased /= np.sum(aliased)
    kernel = cv2.GaussianBlur(aliased, ksize=ksize, sigmaX=alias_blur).astype(np.float64)
    rows, cols = np.nonzero(kernel)  # zero rows/columns contribute nothing: crop them
    return kernel[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _defocus_blur(x, c, rng, fam):
    cv2 = _cv2()
    kernel = _disk(*c)
    if kernel.shape[0] <= 7:  # small kernels: one batched correlation (BORDER_REFLECT_101)
        return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")
    out = np.empty_like(x)
    for i in range(x.shape[0]):  # cv2.filter2D per image, as there
        out[i] = cv2.filter2D(x[i], -1, kernel).reshape(x.shape[1:])
    return out


def _motion_blur_c(x, c, rng, fam):
    radius, sigma = c
    return _motion_blur(x, radius, sigma, rng.uniform(-45, 45, x.shape[0]))


def _zoom_blur(x, c, rng, fam):
    out = x.copy()
    zooms = np.arange(*c)
    for z in zooms:
        out += _clipped_zoom(x, float(z))
    return out / (len(zooms) + 1)


def _snow(x, c, rng, fam):
    loc, scale, zoom, threshold, radius, sigma, blend = c
    n, h, w = x.shape[:3]
    layer = _clipped_zoom(rng.normal(loc, scale, (n, h, w)), zoom)
    layer[layer < threshold] = 0
    layer = (np.clip(layer, 0, 1) * 255).astype(np.uint8) / 255.0  # 8-bit grey PNG
    layer = _motion_blur(layer, radius, sigma, rng.uniform(-135, -45, n))
    layer = (np.round(layer * 255) / 255.0)[..., None]  # 8-bit PNG out of ImageMagick
    grey = _luma(x)[..., None] if x.shape[-1] == 3 else x
    x = blend * x + (1 - blend) * np.maximum(x, grey * 1.5 + 0.5)
    return x + layer + np.rot90(layer, k=2, axes=(1, 2))


def _frost(x, c, rng, fam):
    x = _rgb(x)
    n, h, w = x.shape[:3]
    choices = 5 if fam == "cifar" else 6  # make_cifar_c draws randint(5): frost6 never used
    frost = np.empty_like(x)
    for i in range(n):
        layer = _frost_layer(int(rng.integers(choices)), fam, h, w)
        top = int(rng.integers(0, max(layer.shape[0] - h, 1)))
        left = int(rng.integers(0, max(layer.shape[1] - w, 1)))
        frost[i] = layer[top:top + h, left:left + w]
    return c[0] * x + c[1] * frost


def _fog(x, c, rng, fam):
    n, h, w = x.shape[:3]
    mapsize = _next_pow2(max(h, w))
    if fam == "cifar":
        mapsize = max(mapsize, 32)  # make_cifar_c: a 32x32 fractal cropped to the image
    fractal = _plasma_fractal(rng, n, mapsize, c[1])[:, :h, :w, None]
    max_val = x.max(axis=(1, 2, 3), keepdims=True)
    return (x + c[0] * fractal) * max_val / (max_val + c[0])


def _brightness(x, c, rng, fam):
    hsv = _rgb2hsv(_rgb(x))
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _hsv2rgb(hsv)


def _saturate(x, c, rng, fam):
    hsv = _rgb2hsv(_rgb(x))
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
    return _hsv2rgb(hsv)


def _contrast(x, c, rng, fam):
    means = x.mean(axis=(1, 2), keepdims=True)
    return (x - means) * c + means


def _elastic_transform(x, c, rng, fam):
    cv2 = _cv2()
    n, h, w, ch = x.shape
    if fam == "cifar":  # random affine, then a smoothed random displacement field
        imsize = min(h, w)
        alpha, sigma, jitter = (f * imsize for f in c)
        centre = np.float32((h, w)) // 2
        half = max(min(h, w) // 3, 1)
        pts1 = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
        warped = np.empty_like(x)
        for i in range(n):
            pts2 = pts1 + rng.uniform(-jitter, jitter, size=pts1.shape).astype(np.float32)
            m = cv2.getAffineTransform(pts1, pts2)
            warped[i] = cv2.warpAffine(x[i], m, (w, h), borderMode=cv2.BORDER_REFLECT_101
                                       ).reshape(h, w, ch)
        x = warped
        lim = 1.0
        sig: Any = sigma
    else:  # imagecorruptions: no affine; sigma and displacement relative to the size
        alpha, lim = c, h * 0.005
        sig = (0, h * 0.01, w * 0.01)
    sig = sig if isinstance(sig, tuple) else (0, sig, sig)
    dx = ndimage.gaussian_filter(rng.uniform(-lim, lim, (n, h, w)), sig, mode="reflect",
                                 truncate=3) * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-lim, lim, (n, h, w)), sig, mode="reflect",
                                 truncate=3) * alpha
    nn, yy, xx, cc = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), np.arange(ch),
                                 indexing="ij")
    coords = [nn, yy + dy[..., None], xx + dx[..., None], cc]
    return ndimage.map_coordinates(x, coords, order=1, mode="reflect")


def _pixelate(x, c, rng, fam):
    n, h, w, ch = x.shape
    small = (max(1, int(w * c)), max(1, int(h * c)))
    up = Image.Resampling.BOX if fam == "cifar" else Image.Resampling.NEAREST
    out = np.empty_like(x)
    for i in range(n):
        for k in range(ch):  # float ("F") images: no 8-bit rounding between the two resizes
            img = Image.fromarray(np.ascontiguousarray(x[i, :, :, k], dtype=np.float32))
            img = img.resize(small, Image.Resampling.BOX).resize((w, h), up)
            out[i, :, :, k] = np.asarray(img)
    return out


def _jpeg_compression(x, c, rng, fam):
    x = _rgb(x)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        buf = io.BytesIO()
        Image.fromarray(np.round(np.clip(x[i], 0, 1) * 255).astype(np.uint8)).save(
            buf, "JPEG", quality=int(c))
        buf.seek(0)
        out[i] = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float64) / 255.0
    return out


_SPATTER_KERNEL = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], dtype=np.float32)


def _spatter(x, c, rng, fam):
    loc, scale, sigma, threshold, intensity, mud = c
    x = _rgb(x)
    n, h, w = x.shape[:3]
    liquid = _gauss(rng.normal(loc, scale, (n, h, w)), sigma)
    liquid[liquid < threshold] = 0
    if mud == 0:  # water: pale turquoise, shaded by a distance-to-edge relief
        cv2 = _cv2()
        colour = np.array([175, 238, 238]) / 255.0
        out = np.empty_like(x)
        for i in range(n):
            lq = (np.clip(liquid[i], 0, 1) * 255).astype(np.uint8)
            dist = 255 - cv2.Canny(lq, 50, 150)
            dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
            _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
            dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
            dist = cv2.equalizeHist(dist)
            dist = cv2.filter2D(dist, cv2.CV_8U, _SPATTER_KERNEL)
            dist = cv2.blur(dist, (3, 3)).astype(np.float32)
            m = lq.astype(np.float32) * dist
            peak = float(m.max())
            m = m / peak * intensity if peak > 0 else np.zeros_like(m)
            out[i] = x[i] + m[..., None] * colour
        return out
    m = _gauss((liquid > threshold).astype(np.float32), intensity)  # mud: brown blots
    m[m < 0.8] = 0
    m = m[..., None]
    return x * (1 - m) + m * (np.array([63, 42, 20]) / 255.0)


_IMPL: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise, "defocus_blur": _defocus_blur,
    "glass_blur": _glass_blur, "motion_blur": _motion_blur_c, "zoom_blur": _zoom_blur,
    "snow": _snow, "frost": _frost, "fog": _fog, "brightness": _brightness,
    "contrast": _contrast, "elastic_transform": _elastic_transform, "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression, "speckle_noise": _speckle_noise,
    "gaussian_blur": _gaussian_blur, "spatter": _spatter, "saturate": _saturate,
}


# ------------------------------------------------------------------------------ public API
def _check_severity(severity: int) -> int:
    if not 1 <= severity <= 5:
        raise ValueError(f"corruption severity must be in 1..5, got {severity}")
    return severity


def resolve_family(family: str, height: int, width: int) -> str:
    """"cifar" or "imagenet": the constants used for an image of this size."""
    if family not in FAMILIES:
        raise ValueError(f"corruption family must be one of {FAMILIES}, got {family!r}")
    if family == "auto":
        return "cifar" if max(height, width) <= CIFAR_MAX_SIDE else "imagenet"
    return family


def constants(name: str, severity: int, family: str = "cifar") -> Any:
    """The severity constant(s) of a corruption in a family ("cifar" or "imagenet")."""
    table = {"cifar": CIFAR_C, "imagenet": IMAGENET_C}[family]
    return table[name][_check_severity(severity) - 1]


def _apply(name: str, x: Tensor, severity: int, seed: int, family: str) -> Tensor:
    sev = _check_severity(severity)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"corruptions take (N, C, H, W) images with C = 1 or 3, got "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"corruptions take float images in [0, 1], got {x.dtype}")
    fam = resolve_family(family, x.shape[2], x.shape[3])
    if x.shape[0] == 0:
        return x.clone()
    rng = np.random.default_rng([int(seed), zlib.crc32(name.encode()), sev])
    arr = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    out = _IMPL[name](arr, constants(name, sev, fam), rng, fam)
    if out.shape[-1] == 3 and arr.shape[-1] == 1:
        out = _luma(out)[..., None]
    out = np.clip(out, 0.0, 1.0).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(out)).to(device=x.device, dtype=x.dtype)


def _make(name: str) -> Callable[..., Tensor]:
    def corruption(x: Tensor, severity: int, seed: int = 0, family: str = "auto") -> Tensor:
        return _apply(name, x, severity, seed, family)

    corruption.__name__ = corruption.__qualname__ = name
    corruption.__doc__ = (f"{name} at severity 1..5 of (N, C, H, W) images in [0, 1]; "
                          f"family 'auto' | 'cifar' | 'imagenet' picks the constants.")
    return corruption


gaussian_noise = _make("gaussian_noise")
shot_noise = _make("shot_noise")
impulse_noise = _make("impulse_noise")
defocus_blur = _make("defocus_blur")
glass_blur = _make("glass_blur")
motion_blur = _make("motion_blur")
zoom_blur = _make("zoom_blur")
snow = _make("snow")
frost = _make("frost")
fog = _make("fog")
brightness = _make("brightness")
contrast = _make("contrast")
elastic_transform = _make("elastic_transform")
pixelate = _make("pixelate")
jpeg_compression = _make("jpeg_compression")
speckle_noise = _make("speckle_noise")
gaussian_blur = _make("gaussian_blur")
spatter = _make("spatter")
saturate = _make("saturate")

CORRUPTIONS: dict[str, Callable[..., Tensor]] = {
    name: globals()[name] for name in CORRUPTION_NAMES + EXTRA_CORRUPTIONS
}


def corrupt(x: Tensor, name: str, severity: int, seed: int = 0, family: str = "auto"
            ) -> Tensor:
    try:
        fn = CORRUPTIONS[name]
    except KeyError:
        raise KeyError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}") from None
    return fn(x, severity, seed=seed, family=family)
