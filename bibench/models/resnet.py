"""CIFAR-style ResNets (He et al., 2016), adapted to any input channel count and size."""

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
    )
)
