"""The binary engine's best case on this CPU: a basic-block ResNet written directly with
OpenVINO's opset API, the construction of the hand-built probe behind the 12x target
(docs/deployment.md).

Every 3x3 convolution after the stem is a BinaryConvolution with random 1-bit weights fed by a
FakeQuantize to {0, 1}; scale and BatchNorm are one per-channel Multiply/Add; hardtanh is a
Clamp; 1x1 downsample shortcuts are float convolutions (the architectures' full-precision
policy, `*.shortcut.*`) unless `binary_shortcuts`; stem and classifier stay float. No export
step stands between the network and the engine, so timing it beside the FP32 model shows how
far bibench's exported forms are from what the engine does with this network, on this machine.
Latency does not depend on the weights' values, so random weights serve.

Used by the latency job (bibench.latency.devices, same window as the cell and its FP32 model)
and by bench/latency.py. Imports neither torch nor other bibench modules but timing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bibench.latency.timing import openvino_module


@dataclass(frozen=True)
class ResNetShape:
    widths: tuple[int, ...]  # channels per stage; the stem outputs widths[0]
    blocks: tuple[int, ...]  # basic blocks per stage


# Architectures whose structure the reference reproduces (CIFAR stems: 3x3 conv, stride 1).
REFERENCES = {
    "resnet20": ResNetShape((16, 32, 64), (3, 3, 3)),
    "resnet18": ResNetShape((64, 128, 256, 512), (2, 2, 2, 2)),
    "resnet34": ResNetShape((64, 128, 256, 512), (3, 4, 6, 3)),
}


def reference_note(arch: str) -> str:
    """Why an architecture's latency rows carry no reference timing ('' when they do)."""
    if arch in REFERENCES:
        return ""
    return (f"no hand-built reference for {arch} (exists for "
            f"{', '.join(sorted(REFERENCES))})")


def write_reference(path: str | Path, arch: str, input_shape: tuple[int, int, int],
                    classes: int, *, binary_shortcuts: bool = False, seed: int = 0) -> Path:
    """Write the hand-built reference IR of `arch` (see the module docstring) to `path`."""
    if arch not in REFERENCES:
        raise ValueError(reference_note(arch))
    ov = openvino_module()
    import openvino.opset13 as ops

    shape = REFERENCES[arch]
    layers = _Layers(np.random.default_rng(seed))
    image = ops.parameter([1, *input_shape], np.float32, name="input")
    x = layers.hardtanh(layers.affine(layers.float_conv(image, input_shape[0], shape.widths[0],
                                                        3, 1), shape.widths[0]))
    cin = shape.widths[0]
    for stage, (cout, blocks) in enumerate(zip(shape.widths, shape.blocks, strict=True)):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = layers.basic_block(x, cin, cout, stride, binary_shortcuts)
            cin = cout
    x = ops.reduce_mean(x, ops.constant(np.array([2, 3], np.int64)), False)
    weights = layers.const(layers.rng.normal(0, 0.1, (cin, classes)))
    x = ops.add(ops.matmul(x, weights, False, False), layers.const(np.zeros(classes)))
    path = Path(path)
    ov.save_model(ov.Model([x], [image]), str(path), compress_to_fp16=False)
    return path


class _Layers:
    """The reference's building blocks, drawing random weights from one generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        import openvino.opset1 as opset1
        import openvino.opset13 as ops

        self.ops, self.opset1 = ops, opset1

    def const(self, values):
        return self.ops.constant(np.asarray(values, np.float32))

    def affine(self, x, ch: int):  # scale and BatchNorm, folded
        scale = self.rng.uniform(0.5, 1.5, (1, ch, 1, 1))
        shift = self.rng.normal(0, 0.1, (1, ch, 1, 1))
        return self.ops.add(self.ops.multiply(x, self.const(scale)), self.const(shift))

    def binary_conv(self, x, cin: int, cout: int, k: int, stride: int):
        ov = openvino_module()
        zeros = self.const(np.zeros((1, cin, 1, 1)))
        x01 = self.ops.fake_quantize(x, zeros, zeros, self.const(0.0), self.const(1.0), 2)
        bits = np.packbits(self.rng.integers(0, 2, cout * cin * k * k, dtype=np.uint8),
                           bitorder="little")
        weights = self.ops.constant(ov.Tensor(bits, ov.Shape([cout, cin, k, k]), ov.Type.u1))
        return self.opset1.binary_convolution(x01, weights, [stride] * 2, [k // 2] * 2,
                                              [k // 2] * 2, [1, 1], "xnor-popcount", 0.0)

    def float_conv(self, x, cin: int, cout: int, k: int, stride: int):
        w = self.const(self.rng.normal(0, 0.1, (cout, cin, k, k)))
        return self.ops.convolution(x, w, [stride] * 2, [k // 2] * 2, [k // 2] * 2, [1, 1])

    def hardtanh(self, x):
        return self.ops.clamp(x, -1.0, 1.0)

    def basic_block(self, x, cin: int, cout: int, stride: int, binary_shortcuts: bool):
        y = self.hardtanh(self.affine(self.binary_conv(x, cin, cout, 3, stride), cout))
        y = self.affine(self.binary_conv(y, cout, cout, 3, 1), cout)
        shortcut = x
        if stride != 1 or cin != cout:
            conv = self.binary_conv if binary_shortcuts else self.float_conv
            shortcut = self.affine(conv(x, cin, cout, 1, stride), cout)
        return self.hardtanh(self.ops.add(y, shortcut))
