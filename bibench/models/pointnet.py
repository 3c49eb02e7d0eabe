"""PointNet (Qi et al., 2017) for point-cloud classification and part segmentation.

Inputs are (N, C, P): C channels per point (3 for xyz; 6 with normals, whose T-Net transform
then applies to the xyz channels only) and P points; classification outputs (N, classes),
part segmentation (`pointnet_seg`) outputs (N, parts, P).

Layout (the paper's, Fig. 2): [input T-Net 3x3] -> shared MLP 64-64 -> [feature T-Net 64x64]
-> shared MLP 64-128-1024 -> global aggregation -> FC 512-256 -> classes. Shared MLPs are
Conv1d(kernel 1) + BN + ReLU; the FC head is Linear + BN + ReLU with dropout 0.3 before the
second BN (as the common PyTorch port does). The last BN before each aggregation has no ReLU,
so the aggregated features are roughly N(0, 1), the assumption EMA-max is derived under. T-Nets
are conv 64-128-1024, aggregation, FC 512-256, then a k*k linear map added to the identity.
`pointnet_vanilla` drops both T-Nets.

Aggregation: EMA-max (Entropy-Maximizing Aggregation, BiPointNet, Qin et al. 2020), used in
every model and every T-Net, binarized or not, as the paper does (Appendix A.3). It is max
pooling followed by the transformation phi(x) = x - delta*, where delta* maximises the
information entropy of the binarized aggregated feature sign(phi(max_i x_i)). For n i.i.d.
N(0, 1) inputs the max has CDF Phi(x)^n, so the entropy is maximal (one bit: +1 and -1 equally
likely) when Phi(delta*)^n = 1/2, i.e. delta* = Phi^-1(2^(-1/n)), n = number of points
aggregated (delta* ~ 3.2 for 1024 points). The offset is a fixed function of n, not learned.

Parameter counts (biases on every conv/linear, as the reference implementations):
`pointnet` for xyz input and 40 classes (ModelNet40) 3,480,049 (input T-Net 803,081, feature
T-Net 1,857,344, shared MLPs 151,680, head 667,944); the common PyTorch port that omits the
second 64-64 conv has 3,471,473, the "3.47M" usually quoted. `pointnet_vanilla`: 819,624.

Full-precision policy (`keep_fp`), besides first and last layers: the first conv of the encoder
(reads raw coordinates) and the first conv of each T-Net, as the authors' code keeps them.

The models declare `bibench_unordered_positions = True`: the Conv1d length axis is a set of
points, so binarize() tells the algorithms not to give positions parameters of their own
(XNOR++'s beta would be one scale per point index and break permutation invariance).
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

from bibench.models import Architecture, register_architecture


@lru_cache(maxsize=64)
def ema_max_offset(n: int) -> float:
    """delta* = Phi^-1(2^(-1/n)): the offset that makes sign(max of n N(0,1) - delta*) fair."""
    if n < 1:
        raise ValueError(f"cannot aggregate {n} points")
    p = torch.tensor(0.5 ** (1.0 / n), dtype=torch.float64)
    return float(torch.special.ndtri(p))


class EMAMax(nn.Module):
    """Entropy-maximizing max aggregation over the last dim: max_i x_i - delta*(n)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.amax(dim=-1) - ema_max_offset(x.shape[-1])


def shared_mlp(sizes: tuple[int, ...], last_relu: bool = True) -> nn.Sequential:
    """Conv1d(kernel 1) + BN + ReLU per step (no ReLU after the last BN unless last_relu)."""
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Conv1d(cin, cout, 1), nn.BatchNorm1d(cout)]
        if last_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TNet(nn.Module):
    """Predicts a k x k transform (identity plus a learned residual) from the point set."""

    def __init__(self, in_channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.convs = shared_mlp((in_channels, 64, 128, 1024), last_relu=False)
        self.pool = EMAMax()
        self.fcs = nn.Sequential(
            nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(),
            nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(),
        )
        self.transform = nn.Linear(256, k * k)

    def forward(self, x: Tensor) -> Tensor:
        t = self.transform(self.fcs(self.pool(self.convs(x))))
        eye = torch.eye(self.k, dtype=t.dtype, device=t.device)
        return t.view(-1, self.k, self.k) + eye


class PointNetEncoder(nn.Module):
    """Returns (global feature (N, 1024), per-point features after the feature T-Net)."""

    def __init__(self, in_channels: int, tnets: bool) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.coords = min(3, in_channels)
        self.input_tnet = TNet(in_channels, self.coords) if tnets else None
        self.mlp1 = shared_mlp((in_channels, 64, 64))
        self.feature_tnet = TNet(64, 64) if tnets else None
        self.mlp2 = shared_mlp((64, 64, 128, 1024), last_relu=False)
        self.pool = EMAMax()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.input_tnet is not None:
            t = self.input_tnet(x)
            xyz = torch.bmm(t.transpose(1, 2), x[:, : self.coords])  # (x^T T)^T
            x = torch.cat([xyz, x[:, self.coords:]], dim=1)
        points = self.mlp1(x)
        if self.feature_tnet is not None:
            t = self.feature_tnet(points)
            points = torch.bmm(t.transpose(1, 2), points)
        return self.pool(self.mlp2(points)), points


class PointNet(nn.Module):
    """Classification PointNet: (N, C, P) -> (N, classes)."""

    bibench_unordered_positions = True  # the length axis holds points, a set

    def __init__(self, in_channels: int, num_classes: int, tnets: bool = True,
                 dropout: float = 0.3) -> None:
        super().__init__()
        self.encoder = PointNetEncoder(in_channels, tnets)
        self.head = nn.Sequential(
            nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(),
            nn.Linear(512, 256), nn.Dropout(dropout), nn.BatchNorm1d(256), nn.ReLU(),
            nn.Linear(256, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x)[0])


class PointNetSeg(nn.Module):
    """Part-segmentation PointNet: (N, C, P) -> per-point part logits (N, parts, P).

    Each point's 64-d feature (after the feature T-Net) is concatenated with the global
    feature (1088 channels) and mapped by a shared MLP 512-256-128 to the parts.
    """

    bibench_unordered_positions = True  # the length axis holds points, a set

    def __init__(self, in_channels: int, num_parts: int, tnets: bool = True) -> None:
        super().__init__()
        self.encoder = PointNetEncoder(in_channels, tnets)
        self.seg = nn.Sequential(shared_mlp((1088, 512, 256, 128)), nn.Conv1d(128, num_parts, 1))

    def forward(self, x: Tensor) -> Tensor:
        glob, points = self.encoder(x)
        glob = glob.unsqueeze(-1).expand(-1, -1, points.shape[-1])
        return self.seg(torch.cat([points, glob], dim=1))


def pointnet(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> PointNet:
    return PointNet(input_shape[0], num_classes, tnets=True, **kwargs)


def pointnet_vanilla(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> PointNet:
    return PointNet(input_shape[0], num_classes, tnets=False, **kwargs)


def pointnet_seg(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> PointNetSeg:
    return PointNetSeg(input_shape[0], num_classes, **kwargs)


ENCODER_FP = ("encoder.mlp1.0", "encoder.input_tnet.convs.0", "encoder.feature_tnet.convs.0")

register_architecture(Architecture(
    name="pointnet_vanilla", family="mlp", build=pointnet_vanilla, keep_fp=ENCODER_FP,
    description="PointNet without T-Nets, EMA-max aggregation (0.82M parameters, 40 classes)",
    paper_input=((3, 1024), 40),
))
register_architecture(Architecture(
    name="pointnet", family="mlp", build=pointnet, keep_fp=ENCODER_FP,
    description="PointNet with 3x3 and 64x64 T-Nets, EMA-max aggregation (3.48M, 40 classes)",
    paper_input=((3, 1024), 40),
))
register_architecture(Architecture(
    name="pointnet_seg", family="mlp", build=pointnet_seg, keep_fp=ENCODER_FP,
    description="PointNet part segmentation (T-Nets, EMA-max); output (N, parts, P)",
    paper_input=((3, 2048), 50),
))

__all__ = ["EMAMax", "PointNet", "PointNetSeg", "TNet", "ema_max_offset"]
