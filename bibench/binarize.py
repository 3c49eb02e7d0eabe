"""One call that binarizes any torch model, and the schedule hook every training loop calls."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from bibench.algorithms import get_algorithm
from bibench.algorithms.base import BINARY_LAYER_FOR, Algorithm, BinarizedLayer


def _candidate_layers(model: nn.Module) -> dict[str, nn.Module]:
    return {
        name: module for name, module in model.named_modules() if type(module) in BINARY_LAYER_FOR
    }


def _trace(
    model: nn.Module, example_input: Tensor | Sequence[Tensor], names: dict[str, nn.Module]
) -> tuple[list[str], dict[str, tuple[int, ...]]]:
    """Execution order and per-sample output shape of the candidate layers."""
    order: list[str] = []
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in names.items():

        def hook(_m, _inp, out, name=name):
            if name not in shapes:
                order.append(name)
                shapes[name] = tuple(out.shape[1:])

        handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            args = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
            model(*args)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return order, shapes


def _make_binary(module: nn.Module, algorithm: Algorithm) -> BinarizedLayer:
    cls = BINARY_LAYER_FOR[type(module)]
    if isinstance(module, nn.Linear):
        new = cls(module.in_features, module.out_features, bias=module.bias is not None)
    else:
        new = cls(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    new = new.to(device=module.weight.device, dtype=module.weight.dtype)
    new.load_state_dict(module.state_dict())
    new.algorithm = algorithm
    return new


def _unordered_position_layers(model: nn.Module, names: dict[str, nn.Module]) -> set[str]:
    """Layers inside a module that declares `bibench_unordered_positions` (PointNet: points)."""
    prefixes = [
        f"{name}." if name else ""
        for name, module in model.named_modules()
        if getattr(module, "bibench_unordered_positions", False)
    ]
    return {n for n in names if any(n.startswith(p) for p in prefixes)}


def binarize(
    model: nn.Module,
    algorithm: str | Algorithm,
    *,
    example_input: Tensor | Sequence[Tensor] | None = None,
    keep_fp: Sequence[str] = (),
    keep_first_last: bool = True,
    replace_relu: bool = True,
) -> nn.Module:
    """Return a binarized copy of `model`; the original is left untouched.

    Conv1d, Conv2d and Linear layers become binarized layers that keep their FP weights (so
    finetuning starts from the pretrained model), except the first and last layers in execution
    order and those whose qualified name matches a `keep_fp` glob pattern. ReLU becomes Hardtanh
    (paper Sec. 4). `example_input` (one batch) gives execution order and output shapes; it is
    required by algorithms whose parameters are sized from the layer output (XNOR++). Without
    it the declaration order stands in for the execution order. Layers the example forward
    does not reach are binarized too but never count as first or last.
    """
    algo = get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm
    model = copy.deepcopy(model)
    candidates = _candidate_layers(model)
    # Execution order: with an example input only the layers its forward reaches count, so a
    # layer the forward never runs (an unused auxiliary head) cannot pass for the last layer.
    if example_input is not None:
        order, shapes = _trace(model, example_input, candidates)
    else:
        order, shapes = list(candidates), {}
    full_precision = {n for n in candidates if any(fnmatch.fnmatchcase(n, p) for p in keep_fp)}
    if keep_first_last and order:
        full_precision |= {order[0], order[-1]}
    to_binarize = [n for n in candidates if n not in full_precision]
    _check_shapes_known(algo, to_binarize, shapes, example_input is not None)
    unordered = _unordered_position_layers(model, candidates)
    for name in to_binarize:
        layer = _make_binary(candidates[name], algo)
        layer.ordered_positions = name not in unordered
        algo.setup_layer(layer, shapes.get(name, ()))  # also registers the schedule buffers
        model.set_submodule(name, layer, strict=True)
    if replace_relu:
        for name, module in list(model.named_modules()):
            if type(module) is nn.ReLU:
                model.set_submodule(name, nn.Hardtanh(), strict=True)
    for module in list(model.modules()):  # architecture-level parts, e.g. BERT bi-attention
        hook = getattr(module, "bibench_binarize", None)
        if callable(hook):
            hook(algo)
    model.bibench_algorithm = algo.name
    return model


def _check_shapes_known(algo: Algorithm, names: list[str], shapes: dict, traced: bool) -> None:
    """Stop before any work when an algorithm that needs output shapes cannot have them."""
    if not algo.needs_output_shape or not names:
        return
    if not traced:
        raise ValueError(
            f"algorithm {algo.name!r} sizes its parameters from the layer output: "
            "pass example_input to binarize()"
        )
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(
            f"algorithm {algo.name!r} sizes its parameters from the layer output, and the "
            f"example forward does not reach {missing}: keep them full precision (keep_fp) "
            "or remove them"
        )


def binarized_layers(model: nn.Module) -> Iterator[tuple[str, BinarizedLayer]]:
    """(qualified name, layer) of every binarized layer of the model."""
    for name, module in model.named_modules():
        if isinstance(module, BinarizedLayer):
            yield name, module


def update_schedules(model: nn.Module, step: int, total_steps: int) -> None:
    """Advance per-layer schedules (ReCU's tau, FDA's n and alpha) to step / total_steps.

    Every training loop of the project calls this once per epoch (step = epoch index, total =
    epochs) or once per iteration (step = iteration, total = iterations): the algorithms' formulas
    depend only on the ratio, so epoch- and iteration-based training behave alike.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    for _name, layer in binarized_layers(model):
        layer.algorithm.update_schedule(layer, step, total_steps)
