"""The model zoo: parameter counts against reference figures, output shapes, binarization
with every algorithm (one training step each), bi-attention gradients and the MiniLM loader."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from bibench.algorithms import available, get_algorithm
from bibench.algorithms.base import BinarizedLayer, BinaryMatmul
from bibench.binarize import binarize, binarized_layers
from bibench.models import build_model, get_architecture
from bibench.models.bert import (
    BERT_CONFIGS,
    BertClassifier,
    BertConfig,
    BertSelfAttention,
    BoolSignMatMul,
    MatMul,
    bool_ste,
    load_minilm,
)
from bibench.models.fsmn import fsmn_param_count
from bibench.models.pointnet import EMAMax, ema_max_offset

ZOO = ["resnet18", "resnet34", "resnet18_imagenet", "resnet34_imagenet", "vgg_small",
       "pointnet_vanilla", "pointnet", "pointnet_seg", "bert_tiny4", "bert_tiny6", "bert_base",
       "fsmn", "dfsmn"]


pytestmark = pytest.mark.usefixtures("one_thread")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_on_meta(name: str, input_shape: tuple[int, ...], num_classes: int) -> int:
    """Build on the meta device (no memory, no init cost) and count: no forward pass."""
    with torch.device("meta"):
        return n_params(build_model(name, input_shape, num_classes))


def bert_reference(h: int, layers: int, ffn: int, classes: int, vocab: int = 30522) -> int:
    embeddings = vocab * h + 512 * h + 2 * h + 2 * h
    layer = 4 * (h * h + h) + 2 * 2 * h + (h * ffn + ffn) + (ffn * h + h)
    return embeddings + layers * layer + (h * h + h) + (h * classes + classes)


# --------------------------------------------------------------------------------------------
# Registry and parameter counts
# --------------------------------------------------------------------------------------------


def test_every_architecture_is_registered_with_family_and_policy():
    families = {"cnn": 0, "transformer": 0, "mlp": 0}
    for name in ZOO:
        arch = get_architecture(name)
        assert arch.family in families and arch.description
        assert isinstance(arch.keep_fp, tuple)
        families[arch.family] += 1
    assert all(families.values())
    assert get_architecture("resnet18").keep_fp == ("*.shortcut.*",)
    arch = get_architecture("resnet20")
    assert arch.family == "cnn" and "*.shortcut.*" in arch.keep_fp
    with pytest.raises(KeyError, match="unknown architecture 'resnet21'"):
        get_architecture("resnet21")


@pytest.mark.parametrize(
    "name, shape, classes, expected",
    [
        ("resnet18_imagenet", (3, 224, 224), 1000, 11_689_512),  # torchvision resnet18
        ("resnet34_imagenet", (3, 224, 224), 1000, 21_797_672),  # torchvision resnet34
        ("resnet18", (3, 32, 32), 10, 11_173_962),  # CIFAR-10 ResNet-18
        ("resnet34", (3, 32, 32), 10, 21_282_122),
        ("vgg_small", (3, 32, 32), 10, 4_660_106),  # convs 4,574,592 + BN 3,584 + FC 81,930
        ("pointnet", (3, 1024), 40, 3_480_049),
        ("pointnet_vanilla", (3, 1024), 40, 819_624),
        # BERT-Base BertModel (incl. pooler) is 109,482,240 (bert-base-uncased) + classifier
        ("bert_base", (128,), 2, 109_482_240 + 768 * 2 + 2),
        ("bert_tiny6", (128,), 2, bert_reference(768, 6, 3072, 2)),
        ("bert_tiny4", (128,), 2, bert_reference(312, 4, 1200, 2)),
        ("dfsmn", (101, 32), 12, 543_500),
        ("fsmn", (1, 101, 32), 12, 543_500),
    ],
)
def test_parameter_counts_match_the_references(name, shape, classes, expected):
    assert count_on_meta(name, shape, classes) == expected


def test_pointnet_count_is_the_sum_of_its_documented_parts():
    model = build_model("pointnet", (3, 1024), 40)
    assert n_params(model.encoder.input_tnet) == 803_081
    assert n_params(model.encoder.feature_tnet) == 1_857_344
    assert n_params(model.head) == 667_944
    # within 0.3% of the 3.47M usually quoted (a port without the second 64-64 conv)
    assert abs(n_params(model) - 3_471_473) / 3_471_473 < 0.003


def test_bert_reference_formula_and_tiny_sizes():
    assert bert_reference(768, 12, 3072, 0) == 109_482_240
    assert bert_reference(384, 6, 1536, 0) == 22_713_216  # all-MiniLM-L6-v2
    assert bert_reference(312, 4, 1200, 0) == 14_350_248
    assert bert_reference(768, 6, 3072, 0) == 66_955_008
    cfg = BERT_CONFIGS["bert_tiny6"]
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (6, 768, 3072)


def test_fsmn_formula_follows_its_arguments():
    model = build_model("dfsmn", (50, 40), 10)
    assert n_params(model) == fsmn_param_count(40, 10)
    small = get_architecture("fsmn").build(input_shape=(20, 8), num_classes=5, num_layers=3,
                                           hidden=32, proj=16, left=4, right=1)
    assert n_params(small) == fsmn_param_count(8, 5, 3, 32, 16, 4, 1)


# --------------------------------------------------------------------------------------------
# Small configurations for forward / binarize / train tests
# --------------------------------------------------------------------------------------------

SMALL_VGG = (16, 16, "M", 32, 32, "M", 64, 64, "M")
SMALL_BERT = dict(vocab_size=50, hidden_size=24, num_attention_heads=4, intermediate_size=48,
                  num_hidden_layers=2, max_position_embeddings=16)
SMALL_FSMN = dict(num_layers=2, hidden=32, proj=16)

# name -> (input shape, classes, builder kwargs, task)
SMALL = {
    "resnet18": ((3, 16, 16), 10, dict(width=8), "classification"),
    "resnet34": ((3, 16, 16), 10, dict(width=4), "classification"),
    "resnet18_imagenet": ((3, 32, 32), 10, dict(width=8), "classification"),
    "resnet34_imagenet": ((3, 32, 32), 10, dict(width=4), "classification"),
    "vgg_small": ((3, 16, 16), 10, dict(cfg=SMALL_VGG), "classification"),
    "pointnet_vanilla": ((3, 32), 5, {}, "classification"),
    "pointnet": ((3, 32), 5, {}, "classification"),
    "pointnet_seg": ((3, 32), 4, {}, "segmentation"),
    "bert_tiny4": ((8,), 3, SMALL_BERT, "classification"),
    "bert_tiny6": ((8,), 1, SMALL_BERT, "regression"),
    "bert_base": ((8,), 2, SMALL_BERT, "classification"),
    "fsmn": ((20, 8), 6, SMALL_FSMN, "classification"),
    "dfsmn": ((1, 20, 8), 6, SMALL_FSMN, "classification"),
}


def small_model(name: str) -> nn.Module:
    shape, classes, kwargs, _ = SMALL[name]
    return get_architecture(name).build(input_shape=shape, num_classes=classes, **kwargs)


def example(name: str, batch: int = 4) -> torch.Tensor:
    shape = SMALL[name][0]
    if name.startswith("bert"):
        ids = torch.randint(1, SMALL_BERT["vocab_size"], (batch, *shape))
        ids[0, shape[0] // 2 :] = 0  # one padded sequence
        return ids
    return torch.randn(batch, *shape)


def targets(name: str, batch: int = 4) -> torch.Tensor:
    shape, classes, _, task = SMALL[name]
    if task == "segmentation":
        return torch.randint(0, classes, (batch, shape[-1]))
    if task == "regression":
        return torch.randn(batch)
    return torch.randint(0, classes, (batch,))


def loss_of(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if SMALL[name][3] == "regression":
        return F.mse_loss(out.squeeze(-1), y)
    return F.cross_entropy(out, y)  # (N, C) or (N, C, P)


@pytest.mark.parametrize("name", ZOO)
def test_output_shape(name):
    torch.manual_seed(0)
    model = small_model(name).eval()
    shape, classes, _, task = SMALL[name]
    out = model(example(name, 3))
    expected = (3, classes, shape[-1]) if task == "segmentation" else (3, classes)
    assert out.shape == expected and torch.isfinite(out).all()


def test_full_size_output_shapes_of_the_cheap_ones():
    with torch.no_grad():
        assert build_model("resnet18", (3, 32, 32), 10).eval()(torch.randn(1, 3, 32, 32)).shape \
            == (1, 10)
        assert build_model("vgg_small", (3, 32, 32), 10).eval()(torch.randn(1, 3, 32, 32)).shape \
            == (1, 10)
        seg = build_model("pointnet_seg", (3, 64), 50).eval()
        assert seg(torch.randn(2, 3, 64)).shape == (2, 50, 64)
        model = build_model("bert_tiny4", (16,), 2).eval()
        assert model(torch.randint(0, 30522, (2, 16))).shape == (2, 2)


# --------------------------------------------------------------------------------------------
# Binarization with every algorithm: one optimizer step
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", available())
@pytest.mark.parametrize("name", ZOO)
def test_binarizes_and_trains_one_step(name, algorithm):
    torch.manual_seed(0)
    fp = small_model(name)
    x, y = example(name), targets(name)
    model = binarize(fp, algorithm, example_input=x, keep_fp=get_architecture(name).keep_fp)
    layers = dict(binarized_layers(model))
    assert layers, "nothing was binarized"
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    loss = loss_of(name, model(x), y)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    changed = [n for n, m in layers.items() if not torch.equal(before[n], m.weight)]
    assert changed, "no binarized weight changed"
    if name.startswith("bert"):
        attn = [m for m in model.modules() if hasattr(m, "bi_attention")]
        assert attn and all(m.bi_attention for m in attn)


def test_fp_layer_policies():
    model = binarize(small_model("resnet18"), "bnn", example_input=example("resnet18"),
                     keep_fp=get_architecture("resnet18").keep_fp)
    assert type(model.conv1) is nn.Conv2d and type(model.fc) is nn.Linear
    assert type(model.layer2[0].shortcut[0]) is nn.Conv2d
    assert isinstance(model.layer2[0].conv1, BinarizedLayer)

    model = binarize(small_model("pointnet"), "bnn", example_input=example("pointnet"),
                     keep_fp=get_architecture("pointnet").keep_fp)
    enc = model.encoder
    for layer in (enc.input_tnet.convs[0], enc.feature_tnet.convs[0], enc.mlp1[0]):
        assert type(layer) is nn.Conv1d
    assert isinstance(enc.mlp1[3], BinarizedLayer) and isinstance(enc.mlp2[0], BinarizedLayer)
    assert type(model.head[-1]) is nn.Linear

    model = binarize(small_model("dfsmn"), "bnn", example_input=example("dfsmn"),
                     keep_fp=get_architecture("dfsmn").keep_fp)
    assert type(model.input[0]) is nn.Conv1d and type(model.fc) is nn.Linear
    assert isinstance(model.layers[0].memory, BinarizedLayer)  # depthwise memory binarized
    assert model.layers[0].memory.groups == 16


# --------------------------------------------------------------------------------------------
# Bi-attention
# --------------------------------------------------------------------------------------------


def binarized_bert(algorithm="bnn", enable_by_hook=False):
    torch.manual_seed(0)
    fp = small_model("bert_tiny4")
    x = example("bert_tiny4")
    model = binarize(fp, algorithm, example_input=x)
    if enable_by_hook:
        for module in model.modules():
            if hasattr(module, "bibench_binarize"):
                module.bibench_binarize(model.encoder.layer[1].attention.self.key.algorithm)
    return model, x


def test_fp_bert_uses_plain_matmuls():
    model = small_model("bert_tiny4")
    att = model.encoder.layer[0].attention.self
    assert type(att.matmul_qk) is MatMul and type(att.matmul_av) is MatMul
    model(example("bert_tiny4"))
    assert not att.bi_attention


@pytest.mark.parametrize("enable_by_hook", [False, True])
def test_bi_attention_is_binary_and_gives_q_and_k_gradients(enable_by_hook):
    # Without the hook, attention modules switch themselves on at their first forward.
    model, x = binarized_bert(enable_by_hook=enable_by_hook)
    model.train()
    model(x)
    weights = []
    for layer in model.encoder.layer:
        att = layer.attention.self
        assert att.bi_attention
        assert isinstance(att.matmul_qk, BinaryMatmul)
        assert isinstance(att.matmul_av, BoolSignMatMul)
        att.matmul_av.register_forward_hook(lambda m, inp, out: weights.append(inp[0].detach()))
    model.zero_grad()
    out = model(x)
    assert len(weights) == len(model.encoder.layer)
    for w in weights:  # attention weights are exactly 0 / 1, none on padding keys
        assert set(w.unique().tolist()) <= {0.0, 1.0}
        assert (w[0, :, :, x.shape[1] // 2 :] == 0).all()
    F.cross_entropy(out, targets("bert_tiny4")).backward()
    for layer in model.encoder.layer:
        att = layer.attention.self
        for lin in (att.query, att.key, att.value):
            assert lin.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("algorithm", available())
def test_bi_attention_gives_q_and_k_gradients_with_every_algorithm(algorithm):
    """Q and K reach the loss only through bool(sign(Q) sign(K)^T / sqrt(d))."""
    model, x = binarized_bert(algorithm)
    model.train()
    F.cross_entropy(model(x), targets("bert_tiny4")).backward()
    for layer in model.encoder.layer:
        att = layer.attention.self
        assert att.bi_attention
        for lin in (att.query, att.key):
            assert lin.weight.grad.abs().sum() > 0, (algorithm, lin)


def test_bi_attention_is_bibert_bool_of_the_binary_scores():
    model, x = binarized_bert(enable_by_hook=True)
    captured = {}
    att = model.encoder.layer[1].attention.self
    att.matmul_av.register_forward_hook(lambda m, inp, out: captured.update(a=inp[0]))
    att.matmul_qk.register_forward_hook(lambda m, inp, out: captured.update(q=inp[0], k=inp[1]))
    model.eval()
    with torch.no_grad():
        model(x)
    signed = [torch.where(t >= 0, 1.0, -1.0) for t in (captured["q"], captured["k"])]
    scores = signed[0] @ signed[1] / math.sqrt(att.head_dim)  # k arrives transposed
    mask = (x != 0)[:, None, None, :]
    expected = ((scores >= 0) & mask).float()  # no softmax: threshold at 0 (BiBERT)
    assert torch.equal(captured["a"], expected)


def test_bi_attention_switches_on_about_55_percent_of_keys_for_random_inputs():
    """BiBERT's bool(B_Q B_K^T / sqrt(d)) on random +-1 Q, K (d = 64) is on with probability
    1/2 + C(64, 32) / 2^65 = 0.5497 (a score of exactly 0 counts as on). The softmax form this
    replaces (softmax(A) >= 1/n) switched on about 31% (docs/algorithms.md)."""
    torch.manual_seed(0)
    att = BertSelfAttention(BertConfig(hidden_size=768, num_attention_heads=12))
    att.bibench_binarize(get_algorithm("bnn"))
    q = torch.randint(0, 2, (4, 12, 128, 64)).float() * 2 - 1
    k = torch.randint(0, 2, (4, 12, 128, 64)).float() * 2 - 1
    keys = torch.ones(4, 1, 1, 128, dtype=torch.bool)
    keys[0, ..., 64:] = False  # padding keys are never on
    a = att.attention_weights(q, k, keys)
    assert torch.equal(a, ((q @ k.transpose(-1, -2) >= 0) & keys).float())
    on = a[1:].mean().item()
    assert on == pytest.approx(0.5 + math.comb(64, 32) / 2**65, abs=0.003)
    assert (a[0, ..., 64:] == 0).all()


def test_bool_ste_keeps_nan_and_passes_the_gradient_where_bibert_does():
    """BiBERT's paper: d bool(x) / dx = 1 where |x| <= 1, else 0."""
    x = torch.tensor([math.nan, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0001], requires_grad=True)
    y = bool_ste(x)
    assert y.isnan().tolist() == [True] + [False] * 7
    assert y[1:].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    y[1:].sum().backward()
    assert x.grad[1:].tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]


# --------------------------------------------------------------------------------------------
# XNOR++ positional factors: none on point sets, beta on sequences
# --------------------------------------------------------------------------------------------


def test_xnorpp_pointnet_has_no_per_point_scale_and_stays_permutation_invariant():
    torch.manual_seed(0)
    x = example("pointnet")
    model = binarize(small_model("pointnet"), "xnorpp", example_input=x,
                     keep_fp=get_architecture("pointnet").keep_fp).eval()
    layers = dict(binarized_layers(model))
    convs = [m for m in layers.values() if isinstance(m, nn.Conv1d)]
    assert convs and not any(hasattr(m, "beta") for m in convs)
    with torch.no_grad():
        for m in layers.values():
            m.alpha.uniform_(0.5, 2.0)
        perm = torch.randperm(x.shape[-1])
        torch.testing.assert_close(model(x[..., perm]), model(x))


def test_xnorpp_keeps_a_positional_scale_on_sequences():
    x = example("dfsmn")
    model = binarize(small_model("dfsmn"), "xnorpp", example_input=x,
                     keep_fp=get_architecture("dfsmn").keep_fp)
    memory = model.layers[0].memory
    assert isinstance(memory, BinarizedLayer) and memory.beta.shape == (x.shape[2],)


# --------------------------------------------------------------------------------------------
# EMA-max
# --------------------------------------------------------------------------------------------


def test_ema_max_offset_maximises_the_entropy_of_the_binarized_max():
    torch.manual_seed(0)
    assert ema_max_offset(1) == pytest.approx(0.0, abs=1e-12)
    assert ema_max_offset(1024) == pytest.approx(3.2044, abs=1e-3)
    x = torch.randn(20000, 1, 64)
    agg = EMAMax()(x)
    assert agg.shape == (20000, 1)
    assert (agg > 0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert (x.amax(-1) > 0).float().mean().item() > 0.99  # plain max: almost always +1


# --------------------------------------------------------------------------------------------
# MiniLM loader (safetensors, Hugging Face key names)
# --------------------------------------------------------------------------------------------


def hf_state(model: BertClassifier, prefix: str = "") -> dict[str, torch.Tensor]:
    state = {prefix + k: v for k, v in model.state_dict().items()
             if not k.startswith("classifier.")}
    state[prefix + "embeddings.position_ids"] = torch.arange(512)[None]
    return state


@pytest.mark.parametrize("prefix", ["", "bert."])
def test_load_minilm_from_a_safetensors_file(tmp_path, prefix):
    torch.manual_seed(1)
    source = BertClassifier(BERT_CONFIGS["minilm_l6"], 2)
    assert n_params(source) - (384 * 2 + 2) == 22_713_216
    path = tmp_path / "model.safetensors"
    save_file(hf_state(source, prefix), str(path))
    back = load_file(str(path))
    assert torch.equal(back[prefix + "encoder.layer.5.output.dense.weight"],
                       source.encoder.layer[5].output.dense.weight)
    model = load_minilm(path, num_classes=3)
    assert model.classifier.out_features == 3
    cut = load_minilm(path, layers=2)  # minilm_l2: the embeddings and the first two layers
    assert len(cut.encoder.layer) == 2 and cut.config.num_hidden_layers == 2
    assert torch.equal(cut.encoder.layer[1].output.dense.weight,
                       source.encoder.layer[1].output.dense.weight)
    assert torch.equal(cut.pooler.dense.weight, source.pooler.dense.weight)
    with pytest.raises(ValueError, match="6 layers; cannot keep 7"):
        load_minilm(path, layers=7)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads,
            cfg.intermediate_size) == (6, 384, 12, 1536)
    for key, value in source.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(model.state_dict()[key], value), key
    ids = torch.randint(1, 30522, (2, 12))
    source.eval(), model.eval()
    with torch.no_grad():
        assert torch.allclose(source.pooler(source.encoder(
            source.embeddings(ids, torch.zeros_like(ids)), ids != 0)),
            model.pooler(model.encoder(model.embeddings(ids, torch.zeros_like(ids)), ids != 0)))


def test_load_minilm_rejects_incomplete_files(tmp_path):
    source = BertClassifier(BERT_CONFIGS["minilm_l6"], 2)
    state = hf_state(source)
    del state["encoder.layer.3.attention.self.key.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    with pytest.raises(KeyError, match="attention.self.key"):
        load_minilm(path)
