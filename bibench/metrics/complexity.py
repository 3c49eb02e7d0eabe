"""Theoretical complexity: per-layer parameters and FLOPs, binary vs full precision (Eq. 7).

A layer counts as binary when both its weights and inputs are 1-bit (a binarized layer). Its
product's FLOPs are binary; the scaling factors, thresholds and other extras the algorithm
declares count as full precision, as do BatchNorm and every layer kept in full precision.
FLOPs of every conv and linear layer are 2 per MAC of its weight product, from the shapes a
forward hook sees (what torch.utils.flop_counter counts too; tests/test_metrics_complexity.py
checks it; the counter itself imports torch._dynamo, seconds in every evaluate job).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from bibench.algorithms.base import BinarizedLayer

log = logging.getLogger(__name__)

BINARY_PARAM_COST = 1 / 32  # a 1-bit parameter stores in 1/32 of a float32 (paper Sec. 3.2)
BINARY_FLOP_COST = 1 / 64  # a 1-bit x 1-bit op costs 1/64 FLOP on a 64-bit CPU


@dataclass(frozen=True)
class Totals:
    params: int
    fp_params: int
    binary_params: int
    flops: int
    fp_flops: int
    binary_flops: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class LayerCost(Totals):
    """The cost of one layer: its share of every total, and whether it runs binary."""

    layer: str = ""
    layer_type: str = ""
    binary: bool = False


def _product_flops(layer: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    """2 x MACs of the layer's weight product for one sample."""
    if isinstance(layer, nn.Linear):
        rows = math.prod(out.shape[1:-1]) if out.dim() > 2 else 1
        return 2 * rows * layer.in_features * layer.out_features
    per_output = (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
    return 2 * math.prod(out.shape[1:]) * per_output


def layer_costs(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]
                ) -> list[LayerCost]:
    """Per-layer cost of `model` for one sample shaped like example[0]; a tuple is the
    arguments of forward for one sample (a detector's `trace_input`)."""
    shapes = _trace(model, example if isinstance(example, tuple) else example[:1])
    costs = []
    covered: set[str] = set()
    for name, module in model.named_modules():
        own_params = sum(p.numel() for p in module.parameters(recurse=False))
        if isinstance(module, BinarizedLayer) and name in shapes:
            costs.append(_binary_cost(name, module, *shapes[name]))
            covered.update(n for n, _ in module.named_modules(prefix=name))
        elif name in covered:
            continue
        elif own_params or (isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear))):
            flops = _product_flops(module, *shapes[name]) if name in shapes else 0
            costs.append(LayerCost(
                params=own_params, fp_params=own_params, binary_params=0, flops=flops,
                fp_flops=flops, binary_flops=0, layer=name, layer_type=type(module).__name__))
    return costs


def _trace(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]
           ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One eval-mode forward pass: each conv/linear layer's (input, output); the model's
    training mode is restored."""
    shapes: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = []

    def record(name: str):
        def hook(_module, inputs, output) -> None:
            shapes.setdefault(name, (inputs[0], output))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(record(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*example) if isinstance(example, tuple) else model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return shapes


def _binary_cost(name: str, module: BinarizedLayer, inp: torch.Tensor, out: torch.Tensor
                 ) -> LayerCost:
    """A binarized layer: 1-bit weights and products, plus what its algorithm keeps in FP32
    (bias, scaling factors and their operations)."""
    algo = module.algorithm
    binary_params = module.weight.numel()
    bias = module.bias.numel() if module.bias is not None else 0
    fp_params = bias + algo.extra_fp_params(module)
    binary_flops = _product_flops(module, inp, out)
    fp_flops = algo.extra_fp_ops(module, tuple(out.shape[1:]))
    return LayerCost(
        params=binary_params + fp_params, fp_params=fp_params, binary_params=binary_params,
        flops=binary_flops + fp_flops, fp_flops=fp_flops, binary_flops=binary_flops,
        layer=name, layer_type=type(module).__name__, binary=True)


def totals(costs: list[LayerCost]) -> Totals:
    return Totals(**{f: sum(getattr(c, f) for c in costs) for f in Totals.__dataclass_fields__})


def complexity_rows(model: nn.Module, example: torch.Tensor | tuple[torch.Tensor, ...]
                    ) -> list[dict]:
    """The complexity.parquet rows of a model (paper Eq. 7): one per layer, binary vs full
    precision, and their total."""
    costs = layer_costs(model, example)
    total = totals(costs)
    log.info("complexity: %s", total)
    rows = [dict(c.__dict__) for c in costs]
    rows.append({"layer": "", "layer_type": "total", "binary": False, **total.as_dict()})
    return [{**r, "status": "ok"} for r in rows]


def unmeasured_complexity_rows(reason: str) -> list[dict]:
    """The one complexity.parquet row of a cell whose model is not measured (its training did
    not finish), saying why."""
    return [{"layer": "", "layer_type": "total", "binary": False, "params": None,
             "fp_params": None, "binary_params": None, "flops": None, "fp_flops": None,
             "binary_flops": None, "status": f"not measured: {reason}"[:500]}]


def compression_ratio(fp_model_params: int, binarized: Totals) -> float:
    """r_c of paper Eq. 7: FP model size over binarized size (1-bit params at 1/32)."""
    return fp_model_params / (BINARY_PARAM_COST * binarized.binary_params + binarized.fp_params)


def speedup_ratio(fp_model_flops: int, binarized: Totals) -> float:
    """r_s of paper Eq. 7: FP FLOPs over binarized FLOPs (binary ops at 1/64)."""
    return fp_model_flops / (BINARY_FLOP_COST * binarized.binary_flops + binarized.fp_flops)


def model_summary(arch: str, algorithm: str, input_shape: tuple[int, ...] | None = None,
                  num_classes: int | None = None, keep_fp: tuple[str, ...] | None = None) -> dict:
    """Per-layer precision, parameters, MACs and memory, and the totals r_c, r_s, OM_comp.

    Like larq's model summary: what a deployed model stores and computes, layer by layer.
    Without `input_shape` / `num_classes`: the paper's (the architecture's `paper_input`).
    """
    from bibench.metrics.overall import om_comp
    from bibench.models import get_architecture
    from bibench.training.checkpoint import build_cell_model, example_input

    default_shape, default_classes = get_architecture(arch).paper_input or (None, None)
    input_shape = tuple(input_shape or default_shape or ())
    num_classes = num_classes or default_classes
    if not input_shape or not num_classes:
        raise ValueError(f"no default input for {arch!r}: pass input_shape and num_classes")
    example = example_input(arch, input_shape, batch=1)
    fp_costs = layer_costs(build_cell_model(arch, "fp32", input_shape, num_classes), example)
    costs = layer_costs(
        build_cell_model(arch, algorithm, input_shape, num_classes, keep_fp=keep_fp), example)
    fp, total = totals(fp_costs), totals(costs)
    r_c, r_s = compression_ratio(fp.params, total), speedup_ratio(fp.flops, total)
    layers = [{
        "layer": c.layer, "type": c.layer_type,
        "weight_bits": 1 if c.binary else 32, "input_bits": 1 if c.binary else 32,
        "params": c.params, "binary_params": c.binary_params, "fp_params": c.fp_params,
        "macs": c.flops // 2, "binary_macs": c.binary_flops // 2, "fp_macs": c.fp_flops // 2,
        "memory_bytes": c.binary_params / 8 + 4 * c.fp_params,
    } for c in costs]
    return {
        "arch": arch, "algorithm": algorithm, "input_shape": list(input_shape),
        "num_classes": num_classes, "layers": layers,
        "totals": {**total.as_dict(), "memory_bytes": total.binary_params / 8
                   + 4 * total.fp_params, "fp32_memory_bytes": 4 * fp.params},
        "compression_ratio": r_c, "speedup_ratio": r_s, "om_comp": om_comp([r_c], [r_s]),
    }
