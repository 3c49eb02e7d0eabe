"""What the evaluate job measures of a cell's model: its task metric on the clean test set and
on each corruption x severity, with the per-example predictions the paired tests compare."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from bibench.data import TaskData

log = logging.getLogger(__name__)


class CleanResult(NamedTuple):
    """What the export needs of the clean evaluation: PyTorch's outputs (logits, or a
    detector's detections) where they were computed on the CPU (the parity reference: one
    forward pass less), else None; the task metric and its chance level (NaN where it has
    none)."""

    outputs: Any
    value: float
    chance: float


def conditions(data: TaskData, corruptions: dict[str, Any], generate: bool = True
               ) -> Iterator[tuple[str, int, Any, Any]]:
    """(condition, severity, x, y) of the clean test set and each corruption x severity.

    Corruptions are generated from the test set (without `generate`, for a model that is not
    run, x is the clean test set: same size and labels), or read from the official CIFAR-10-C
    files when `corruptions["files"]` names their folder. The generators' module (scipy) is
    imported only by a task that has corruptions.
    """
    yield "clean", 0, data.x_test, data.y_test
    for name, severities in sorted(corruptions["corruptions"].items()):
        for severity in severities:
            if corruptions["files"] is None and not generate:
                yield name, severity, data.x_test, data.y_test
            elif corruptions["files"] is None:
                from bibench.evaluation.corruptions import corrupt

                yield name, severity, corrupt(data.x_test, name, severity), data.y_test
            else:
                from bibench.data.official import load_cifar10c

                x, y = load_cifar10c(corruptions["files"], name, severity,
                                     max_test=len(data.x_test))
                yield name, severity, x, y


def evaluation_rows(net: Any, data: TaskData, corruptions: dict[str, Any], device: Any,
                    base: dict[str, Any], not_trained: str | None
                    ) -> tuple[list[dict[str, Any]], CleanResult]:
    """The eval.parquet rows of a model (`base`: the cell's and the provenance's columns) and
    what the export needs of the clean test set. A model whose training did not finish
    (`not_trained`: why) is not run: its rows say why, with NaN metrics."""
    from bibench.evaluation.predict import METRICS, per_example, predict
    from bibench.metrics.quality import chance_level

    trained = not_trained is None
    if not trained:
        log.warning("%s: not evaluated, metrics are recorded as NaN", not_trained)
    metric = METRICS[data.metric]
    rows = []
    clean = CleanResult(None, float("nan"), float("nan"))
    # once: a detector's (random boxes through its mAP) takes seconds on a real test set
    test_chance = chance_level(data.y_test.numpy(), data.metric)
    for condition, severity, x, y in conditions(data, corruptions, generate=trained):
        output = predict(net, x, device=device) if trained else None
        value = metric(output, y) if trained else float("nan")
        chance = test_chance if y is data.y_test else chance_level(y.numpy(), data.metric)
        if condition == "clean":
            clean = CleanResult(output if device.type == "cpu" else None, value, chance)
        log.info("%s severity %d: %s %.4f", condition, severity, data.metric, value)
        rows.append({**base, "condition": condition,
                     "severity": severity, "metric": data.metric, "value": value,
                     "n_samples": len(x), "chance_value": chance, "embedded": data.embedded,
                     "stands_in_for": data.stands_in_for,
                     "status": "ok" if trained else f"not evaluated: {not_trained}"[:500],
                     "predictions": per_example(output, data.task_type) if trained else None,
                     "targets": (per_example(y, data.task_type, targets=True)
                                 if condition == "clean" else None)})
    return rows, clean
