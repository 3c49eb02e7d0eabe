"""Short trainings that show what an operator change does to results (not a test).

Each case finetunes a small binarized model on embedded data for a few epochs and reports the
final training loss and test accuracy per seed; `pointnet_permutation` trains an XNOR++
PointNet and reports how many test predictions change when the points are stored in another
order. Run it once with the current code and once with PYTHONPATH pointing at a checkout of
the code before the change, and compare (docs/algorithms.md lists the cases it was used for).

    python bench/operator_effects.py [--cases NAME ...] [--seeds 5] [--dorefa-per-channel] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
import torch.nn.functional as F

from bibench.binarize import binarize, update_schedules
from bibench.data import load_dataset
from bibench.models import get_architecture

BERT = dict(vocab_size=30522, hidden_size=128, num_attention_heads=2, intermediate_size=256,
            num_hidden_layers=2, max_position_embeddings=64)
# name -> (architecture, dataset, algorithm, epochs, optimizer, learning rate, builder kwargs)
CASES = {
    "resnet20_digits_recu_adam": ("resnet20", "digits_embedded", "recu", 8, "adam", 1e-3, {}),
    "resnet20_digits_recu_sgd": ("resnet20", "digits_embedded", "recu", 8, "sgd", 0.1, {}),
    "resnet20_digits_fda_adam": ("resnet20", "digits_embedded", "fda", 8, "adam", 1e-3, {}),
    "resnet20_digits_dorefa_adam": ("resnet20", "digits_embedded", "dorefa", 8, "adam", 1e-3, {}),
    "bert_text_bnn_adam": ("bert_tiny4", "text_embedded", "bnn", 20, "adam", 1e-3, BERT),
}


def _binarized(arch: str, algo: str, x: torch.Tensor, classes: int, kwargs: dict):
    policy = get_architecture(arch)
    fp = policy.build(input_shape=tuple(x.shape[1:]), num_classes=classes, **kwargs)
    return binarize(fp, algo, example_input=x[:2], keep_fp=policy.keep_fp,
                    keep_first_last=policy.keep_first_last)


def _train(model, x, y, epochs: int, optimizer: str, lr: float) -> None:
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        update_schedules(model, epoch, epochs)
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def run_case(name: str, seed: int) -> dict[str, float]:
    arch, dataset, algo, epochs, optimizer, lr, kwargs = CASES[name]
    torch.manual_seed(seed)
    data = load_dataset(dataset, max_train=512, max_test=512)
    classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    model = _binarized(arch, algo, data.x_train, classes, kwargs)
    _train(model, data.x_train, data.y_train, epochs, optimizer, lr)
    with torch.no_grad():
        acc = (model(data.x_test).argmax(1) == data.y_test).float().mean().item()
        loss = F.cross_entropy(model(data.x_train), data.y_train).item()
    return {"train_loss": loss, "test_acc": acc}


def pointnet_permutation(seed: int) -> dict[str, float]:
    """Fraction of test predictions of a trained XNOR++ PointNet that change when the points
    are permuted (0 for a permutation-invariant model)."""
    torch.manual_seed(seed)
    data = load_dataset("pointcloud_embedded", max_train=256, max_test=256)
    model = _binarized("pointnet_vanilla", "xnorpp", data.x_train, 10, {})
    _train(model, data.x_train, data.y_train, 4, "adam", 1e-2)
    with torch.no_grad():
        a = model(data.x_test)
        b = model(data.x_test[..., torch.randperm(data.x_test.shape[-1])])
    return {"predictions_changed": (a.argmax(1) != b.argmax(1)).float().mean().item(),
            "relative_logit_change": ((a - b).abs().mean() / a.abs().mean()).item()}


def _use_per_channel_dorefa() -> None:
    """DoReFa with one mean|w| per output channel (the authors' code) instead of per layer."""
    from bibench.algorithms.base import per_channel_mean_abs, sign_scaled
    from bibench.algorithms.dorefa import DoReFa

    def binarize_weight(self, layer, weight):
        with torch.no_grad():
            alpha = per_channel_mean_abs(weight)
        return sign_scaled(weight, alpha)

    DoReFa.binarize_weight = binarize_weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=None,
                        help=f"default: all of {sorted(CASES)} and pointnet_permutation")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dorefa-per-channel", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.dorefa_per_channel:
        _use_per_channel_dorefa()
    results = {}
    for name in args.cases or [*CASES, "pointnet_permutation"]:
        run = pointnet_permutation if name == "pointnet_permutation" else (
            lambda seed, name=name: run_case(name, seed))
        results[name] = [run(seed) for seed in range(args.seeds)]
        if not args.json:
            for key in results[name][0]:
                values = [r[key] for r in results[name]]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                print(f"{name:32s} {key:22s} {statistics.mean(values):.4f} +- {spread:.4f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
