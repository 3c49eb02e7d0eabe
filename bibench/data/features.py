"""Speech features in torch: power spectrogram, HTK mel filterbank, log-mel and MFCC.

Defaults follow the keyword-spotting setup of TensorFlow's speech_commands example (16 kHz,
30 ms windows every 10 ms, 40 mel bands between 20 Hz and 4 kHz), here with:

- frames: `win_length` samples every `hop_length`, no padding (1 s -> 98 frames), periodic
  Hann window, zero-padded to `n_fft` for the real FFT; power = |FFT|^2;
- mel scale: HTK, mel(f) = 2595 * log10(1 + f / 700); `n_mels` triangular filters whose
  corners are `n_mels + 2` points equally spaced in mel between `f_min` and `f_max`, each
  rising linearly (in Hz) from 0 at its left corner to 1 at its centre and back to 0 at its
  right corner, evaluated at the FFT bin frequencies k * sample_rate / n_fft; no area
  normalisation;
- log-mel: log(mel energies + `eps`);
- MFCC: orthonormal DCT-II of the log-mel vector, first `n_mfcc` coefficients.

All functions take waveforms (..., S) and return (..., T, F) float32.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

SAMPLE_RATE = 16000
WIN_LENGTH = 480  # 30 ms
HOP_LENGTH = 160  # 10 ms
N_FFT = 512
F_MIN = 20.0
F_MAX = 4000.0


def hz_to_mel(hz: Tensor | float) -> Tensor:
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: Tensor | float) -> Tensor:
    return 700.0 * (10.0 ** (torch.as_tensor(mel, dtype=torch.float64) / 2595.0) - 1.0)


def mel_filterbank(n_mels: int = 40, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                   f_min: float = F_MIN, f_max: float | None = F_MAX) -> Tensor:
    """Triangular HTK-mel filters, float32 (n_mels, n_fft // 2 + 1)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    corners = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)),
                                       n_mels + 2, dtype=torch.float64))
    lower, centre, upper = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return torch.minimum(rising, falling).clamp(min=0.0).float()


def dct_matrix(n_out: int, n_in: int) -> Tensor:
    """Orthonormal DCT-II, float32 (n_out, n_in): y = D @ x (scipy's dct(type=2, norm='ortho'))."""
    if n_out > n_in:
        raise ValueError(f"cannot keep {n_out} DCT coefficients of {n_in} inputs")
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    d = torch.cos(math.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    d[0] /= math.sqrt(2.0)
    return d.float()


def power_spectrogram(wave: Tensor, n_fft: int = N_FFT, win_length: int = WIN_LENGTH,
                      hop_length: int = HOP_LENGTH) -> Tensor:
    """|rfft(hann * frame, n_fft)|^2 of unpadded frames: (..., S) -> (..., T, n_fft // 2 + 1)."""
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} > n_fft {n_fft}")
    if wave.shape[-1] < win_length:
        raise ValueError(f"waveform of {wave.shape[-1]} samples is shorter than one window")
    frames = wave.float().unfold(-1, win_length, hop_length)  # (..., T, win_length)
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float32)
    spec = torch.fft.rfft(frames * window, n=n_fft, dim=-1)
    return spec.real.square() + spec.imag.square()


def log_mel(wave: Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = 40,
            n_fft: int = N_FFT, win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH,
            f_min: float = F_MIN, f_max: float | None = F_MAX, eps: float = 1e-6) -> Tensor:
    """log(mel energies + eps): (..., S) -> (..., T, n_mels)."""
    power = power_spectrogram(wave, n_fft, win_length, hop_length)
    fb = mel_filterbank(n_mels, n_fft, sample_rate, f_min, f_max)
    return torch.log(power @ fb.T + eps)


def mfcc(wave: Tensor, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 40, n_mels: int = 40,
         n_fft: int = N_FFT, win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH,
         f_min: float = F_MIN, f_max: float | None = F_MAX, eps: float = 1e-6) -> Tensor:
    """First `n_mfcc` orthonormal DCT-II coefficients of the log-mel.

    (..., S) -> (..., T, n_mfcc)."""
    logmel = log_mel(wave, sample_rate, n_mels, n_fft, win_length, hop_length, f_min, f_max, eps)
    return logmel @ dct_matrix(n_mfcc, n_mels).T


def num_frames(num_samples: int, win_length: int = WIN_LENGTH,
               hop_length: int = HOP_LENGTH) -> int:
    return 1 + (num_samples - win_length) // hop_length
