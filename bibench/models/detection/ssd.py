"""SSD300 (Liu et al. 2016) with VGG16 and its extra layers, as the authors' mmdetection SSD300.

- VGG16 (ceil-mode pools, no last pool): conv4_3 (L2-normalised, learnable scale initialised to
  20) and fc7 (pool5 3x3/1, fc6 as 3x3 conv with dilation 6, fc7 1x1), then the SSD neck's
  four extra stages (1x1 then 3x3: stride 2, stride 2, valid, valid): six maps with 512, 1024,
  512, 256, 256, 256 channels (38, 19, 10, 5, 3, 1 cells at 300x300).
- Default boxes per the SSD paper with mmdetection's sizes (base size ratios 0.15-0.9 of the
  input: min sizes 21/45/99/153/207/261, max 45/.../315 at 300), aspect ratios [2], [2, 3],
  [2, 3], [2, 3], [2], [2] (4 or 6 boxes a cell), strides 8/16/32/64/100/300.
- Loss: IoU-0.5 matching (each object also claims its best box), softmax cross-entropy with
  hard-negative mining 3:1, smooth-L1 (beta 1) on positives, both over the positive count.
- Test: score 0.02, per-class NMS 0.45, 200 detections per image.

For inputs other than 300 the strides are the input size over the map size and the box sizes
scale with the input; a valid 3x3 extra that would empty a map of under 3 cells is padded.
forward returns raw outputs (class logits (N, P, C + 1), box deltas (N, P, 4)); decoding and
NMS run outside the graph (`detect`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bibench.models import Architecture, register_architecture
from bibench.models.detection.common import (
    Detector,
    decode_per_class,
    select_detections,
    softmax_scores,
    split_targets,
)
from bibench.models.detection.ops import box_iou, encode_boxes, match_anchors

SSD_STDS = (0.1, 0.1, 0.2, 0.2)
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
MAP_CHANNELS = (512, 1024, 512, 256, 256, 256)
EXTRA_MIDDLE = (256, 128, 128, 128)
ASPECT_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))
STRIDES_300 = (8, 16, 32, 64, 100, 300)


class L2Norm(nn.Module):
    """Channel-wise L2 normalisation with a learnable per-channel scale (SSD's conv4_3)."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), scale))

    def forward(self, x: Tensor) -> Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt().clamp(min=1e-10)
        return x / norm * self.weight[None, :, None, None]


def _conv(in_ch: int, out: int, batch_norm: bool, *args, **kwargs) -> list[nn.Module]:
    """A conv (bias-free before BatchNorm), optional BatchNorm, ReLU."""
    conv = nn.Conv2d(in_ch, out, *args, bias=not batch_norm, **kwargs)
    return [conv, nn.BatchNorm2d(out), nn.ReLU()] if batch_norm else [conv, nn.ReLU()]


def _vgg16(in_channels: int, scale: float, batch_norm: bool
           ) -> tuple[nn.Sequential, nn.Sequential]:
    """VGG16 up to conv4_3 + ReLU, and from pool4 to fc7 + ReLU."""
    layers: list[nn.Module] = []
    split, channels = 0, in_channels
    for item in VGG16_CFG:
        if item == "M":
            if len([m for m in layers if isinstance(m, nn.MaxPool2d)]) == 3:
                split = len(layers)  # pool4 starts the second part
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
            continue
        out = max(1, round(int(item) * scale))
        layers += _conv(channels, out, batch_norm, 3, 1, 1)
        channels = out
    fc = max(1, round(1024 * scale))
    layers += [nn.MaxPool2d(3, 1, 1), *_conv(channels, fc, batch_norm, 3, 1, 6, dilation=6),
               *_conv(fc, fc, batch_norm, 1)]
    return nn.Sequential(*layers[:split]), nn.Sequential(*layers[split:])


def _extra(in_ch: int, mid: int, out: int, stride: int, padding: int,
           batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(*_conv(in_ch, mid, batch_norm, 1),
                         *_conv(mid, out, batch_norm, 3, stride, padding))


def _map_sizes(size: int) -> list[int]:
    """Side lengths of the six maps for a square input of `size` (VGG's ceil-mode pools)."""
    s = size
    for _ in range(3):
        s = math.ceil(s / 2)
    sizes = [s, math.ceil(s / 2)]  # conv4_3, fc7
    for stride_two in (True, True, False, False):
        s = sizes[-1]
        sizes.append((s - 1) // 2 + 1 if stride_two else (s - 2 if s >= 3 else s))
    return sizes


def default_box_shapes(size: int) -> list[Tensor]:
    """Per map, the default boxes centred on (0, 0): square min, square sqrt(min*max), then a
    wide and a tall box per aspect ratio (mmdetection's order)."""
    low, high, levels = 15, 90, len(MAP_CHANNELS)
    step = (high - low) // (levels - 2)
    ratios = [7, *range(low, high + 1, step)]  # first level: 0.07 of the input
    sizes = [size * r / 100 for r in ratios] + [size * (high + step) / 100]
    shapes = []
    for k, aspect in enumerate(ASPECT_RATIOS):
        lo, hi = sizes[k], sizes[k + 1]
        wh = [(lo, lo), (math.sqrt(lo * hi),) * 2]
        for r in aspect:
            wh += [(lo * math.sqrt(r), lo / math.sqrt(r)), (lo / math.sqrt(r), lo * math.sqrt(r))]
        t = torch.tensor(wh)
        shapes.append(torch.cat([-t / 2, t / 2], dim=1))
    return shapes


class SSD300(Detector):
    """SSD300 with VGG16; `scale` multiplies every channel count (1.0 = the paper's);
    `batch_norm` puts BatchNorm after every backbone and extra conv (not in the paper's SSD,
    which starts from an ImageNet-pretrained VGG16; from scratch, VGG16 does not train without
    it)."""

    def __init__(self, in_channels: int, num_classes: int, size: int = 300,
                 scale: float = 1.0, batch_norm: bool = False) -> None:
        super().__init__()
        from bibench.models.detection.ops import grid_anchors

        self.num_classes, self.size = num_classes, size
        self.features1, self.features2 = _vgg16(in_channels, scale, batch_norm)
        ch = [max(1, round(c * scale)) for c in MAP_CHANNELS]
        self.l2norm = L2Norm(ch[0])
        maps = _map_sizes(size)
        self.extras = nn.ModuleList([
            _extra(ch[k + 1], max(1, round(EXTRA_MIDDLE[k] * scale)), ch[k + 2],
                   2 if k < 2 else 1, 1 if k < 2 or maps[k + 1] < 3 else 0, batch_norm)
            for k in range(4)])
        shapes = default_box_shapes(size)
        self.cls_heads = nn.ModuleList([nn.Conv2d(c, len(s) * (num_classes + 1), 3, 1, 1)
                                        for c, s in zip(ch, shapes, strict=True)])
        self.reg_heads = nn.ModuleList([nn.Conv2d(c, len(s) * 4, 3, 1, 1)
                                        for c, s in zip(ch, shapes, strict=True)])
        strides = STRIDES_300 if size == 300 else [size / m for m in maps]
        priors = [grid_anchors(s, st, m, m) for s, st, m in zip(shapes, strides, maps,
                                                                 strict=True)]
        self.register_buffer("priors", torch.cat(priors), persistent=False)
        self.neg_pos_ratio, self.score_thr, self.nms_thr, self.max_per_image = 3, 0.02, 0.45, 200

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.features1(images)
        maps = [self.l2norm(x)]
        x = self.features2(x)
        maps.append(x)
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        n = images.shape[0]  # not len(): the exported graph keeps the batch dim dynamic
        logits = [h(m).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1)
                  for h, m in zip(self.cls_heads, maps, strict=True)]
        deltas = [h(m).permute(0, 2, 3, 1).reshape(n, -1, 4)
                  for h, m in zip(self.reg_heads, maps, strict=True)]
        return torch.cat(logits, 1), torch.cat(deltas, 1)

    def _image_loss(self, logits: Tensor, deltas: Tensor, boxes: Tensor, classes: Tensor
                    ) -> tuple[Tensor, Tensor, int]:
        """Summed classification (3:1 hard negatives) and box losses, and the positive count."""
        assigned = match_anchors(box_iou(boxes, self.priors), 0.5, 0.5, min_pos_iou=0.0)
        positive = assigned >= 0
        labels = torch.full_like(assigned, self.num_classes)
        labels[positive] = classes[assigned[positive]]
        ce = F.cross_entropy(logits, labels, reduction="none")
        n_pos = int(positive.sum())
        negative_ce = ce.masked_fill(positive, float("-inf"))
        n_neg = min(self.neg_pos_ratio * n_pos, int((~positive).sum()))
        hard = negative_ce.topk(n_neg).values if n_neg else ce.new_zeros(0)
        goal = encode_boxes(self.priors[positive], boxes[assigned[positive]], SSD_STDS)
        reg = F.smooth_l1_loss(deltas[positive], goal, beta=1.0, reduction="sum")
        return ce[positive].sum() + hard.sum(), reg, n_pos

    def loss(self, images: Tensor, targets: Tensor) -> dict[str, Tensor]:
        logits, deltas = self(images)
        cls_terms, reg_terms, n_pos = [], [], 0
        for lg, dl, (boxes, classes) in zip(logits, deltas, split_targets(targets), strict=True):
            c, r, n = self._image_loss(lg, dl, boxes.to(lg), classes.to(lg.device))
            cls_terms.append(c)
            reg_terms.append(r)
            n_pos += n
        n_pos = max(n_pos, 1)
        return {"cls": torch.stack(cls_terms).sum() / n_pos,
                "reg": torch.stack(reg_terms).sum() / n_pos}

    def postprocess(self, logits: Tensor, deltas: Tensor) -> list[dict[str, Tensor]]:
        """Raw outputs -> per-image detections (score 0.02, NMS 0.45, 200 a image)."""
        return [select_detections(decode_per_class(self.priors, dl, SSD_STDS, self.size,
                                                   self.size),
                                  softmax_scores(lg), self.score_thr, self.nms_thr,
                                  self.max_per_image)
                for lg, dl in zip(logits, deltas, strict=True)]

    @torch.no_grad()
    def detect(self, images: Tensor) -> list[dict[str, Tensor]]:
        return self.postprocess(*self(images))


def ssd300_vgg16(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> SSD300:
    _check_square(input_shape)
    return SSD300(input_shape[0], num_classes, size=input_shape[1], **kwargs)


def ssd300_vgg16_small(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> SSD300:
    """An eighth of the channels and BatchNorm (it trains from scratch), for the embedded task."""
    _check_square(input_shape)
    options = {"scale": 0.125, "batch_norm": True, **kwargs}
    return SSD300(input_shape[0], num_classes, size=input_shape[1], **options)


def _check_square(input_shape: tuple[int, ...]) -> None:
    if len(input_shape) != 3 or input_shape[1] != input_shape[2] or input_shape[1] < 32:
        raise ValueError(f"SSD300 takes square images of at least 32x32 (C, S, S), got "
                         f"{input_shape}")


# Full precision besides the first conv: the L2Norm scale (not a conv) and every head conv.
# VGG16 (conv1_2 to fc7) and the four extra stages are binarized.
SSD_FP = ("cls_heads.*", "reg_heads.*")

register_architecture(Architecture(
    name="ssd300_vgg16", family="cnn", build=ssd300_vgg16, keep_fp=SSD_FP,
    description="SSD300, VGG16 + extras (six maps, 8732 default boxes at 300x300)"))
register_architecture(Architecture(
    name="ssd300_vgg16_small", family="cnn", build=ssd300_vgg16_small, keep_fp=SSD_FP,
    description="SSD300 VGG16 at 1/8 of the channels, with BatchNorm (embedded task)"))
