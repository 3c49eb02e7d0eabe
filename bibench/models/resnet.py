"""ResNets (He et al., 2016), adapted to any input channel count and size.

- `resnet20`: the 3-stage CIFAR ResNet (16-32-64 channels).
- `resnet18`, `resnet34`: 4-stage ResNets with the CIFAR stem (3x3/1 conv, no max-pool), the
  variant the binarization literature trains on CIFAR-10 (11,173,962 / 21,282,122 parameters
  for 10 classes).
- `resnet18_imagenet`, `resnet34_imagenet`: the same with the ImageNet stem (7x7/2 conv +
  3x3/2 max-pool), torchvision's layout (11,689,512 / 21,797,672 parameters for 1000 classes).
  The stem is chosen by name, never from the input size, so a config always names one network.

Full-precision policy (`keep_fp`), besides the first layer (stem conv) and last layer (fc) that
binarize() always keeps: the 1x1 downsample shortcut convs (`*.shortcut.*`), as the authors'
code does. (The paper's theoretical-complexity numbers are consistent with binarized shortcuts;
an architecture entry with `keep_fp=()` gives that variant.)
"""

from __future__ import annotations

from torch import Tensor, nn

from bibench.models import Architecture, register_architecture


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            # Option B (1x1 conv + BN) shortcut; kept full precision, as the official code does.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3 stages of `blocks` basic blocks (16-32-64 channels): ResNet-20 has 3 blocks a stage."""

    def __init__(self, blocks: int, in_channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        layers = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            for i in range(blocks):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(self.act1(self.bn1(self.conv1(x))))
        return self.fc(self.pool(out).flatten(1))


def resnet20(input_shape: tuple[int, ...], num_classes: int) -> CifarResNet:
    return CifarResNet(3, in_channels=input_shape[0], num_classes=num_classes)


register_architecture(
    Architecture(
        name="resnet20",
        family="cnn",
        build=resnet20,
        keep_fp=("*.shortcut.*",),
        description="ResNet-20 (CIFAR stem, 0.27M parameters)",
        paper_input=((3, 32, 32), 10),
    )
)


# --------------------------------------------------------------------------------------------
# ResNet-18 / ResNet-34 (He et al., 2016): 4 stages of basic blocks, 64-128-256-512 channels
# --------------------------------------------------------------------------------------------


class ResNet(nn.Module):
    """ResNet-18/34 with either stem; the block layout is torchvision's.

    stem="cifar": 3x3/1 conv + BN + ReLU, no max-pool (the CIFAR ResNet-18 of the binarization
    literature, 11,173,962 parameters for 10 classes).
    stem="imagenet": 7x7/2 conv + BN + ReLU + 3x3/2 max-pool (torchvision's resnet18: 11,689,512
    parameters for 1000 classes; resnet34: 21,797,672).
    Downsample shortcuts are 1x1 conv + BN (option B); see the FP policy in the module docstring.
    """

    def __init__(self, blocks: tuple[int, ...], in_channels: int, num_classes: int,
                 stem: str = "cifar", width: int = 64) -> None:
        super().__init__()
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        self.stem = stem
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU()
        in_planes = width
        stages = []
        for stage, n in enumerate(blocks):
            planes = width * 2**stage
            layer = []
            for i in range(n):
                layer.append(BasicBlock(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
                in_planes = planes
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.pool(out).flatten(1))


RESNET_BLOCKS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


def resnet18(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> ResNet:
    return ResNet(RESNET_BLOCKS["resnet18"], input_shape[0], num_classes, stem="cifar", **kwargs)


def resnet34(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> ResNet:
    return ResNet(RESNET_BLOCKS["resnet34"], input_shape[0], num_classes, stem="cifar", **kwargs)


def resnet18_imagenet(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> ResNet:
    return ResNet(RESNET_BLOCKS["resnet18"], input_shape[0], num_classes, stem="imagenet",
                  **kwargs)


def resnet34_imagenet(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> ResNet:
    return ResNet(RESNET_BLOCKS["resnet34"], input_shape[0], num_classes, stem="imagenet",
                  **kwargs)


# Downsample (1x1) shortcut convs stay full precision, as in the authors' code.
SHORTCUT_FP = ("*.shortcut.*",)

register_architecture(Architecture(
    name="resnet18", family="cnn", build=resnet18, keep_fp=SHORTCUT_FP,
    description="ResNet-18, CIFAR stem (3x3 conv, no max-pool); 11.17M parameters for 10 classes",
    paper_input=((3, 32, 32), 10),
))
register_architecture(Architecture(
    name="resnet34", family="cnn", build=resnet34, keep_fp=SHORTCUT_FP,
    description="ResNet-34, CIFAR stem (3x3 conv, no max-pool); 21.28M parameters for 10 classes",
    paper_input=((3, 32, 32), 10),
))
register_architecture(Architecture(
    name="resnet18_imagenet", family="cnn", build=resnet18_imagenet, keep_fp=SHORTCUT_FP,
    description="ResNet-18, ImageNet stem (7x7/2 conv + max-pool); 11.69M for 1000",
    paper_input=((3, 224, 224), 1000),
))
register_architecture(Architecture(
    name="resnet34_imagenet", family="cnn", build=resnet34_imagenet, keep_fp=SHORTCUT_FP,
    description="ResNet-34, ImageNet stem (7x7/2 conv + max-pool); 21.80M for 1000",
    paper_input=((3, 224, 224), 1000),
))
