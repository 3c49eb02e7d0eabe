"""VGG-Small (the CIFAR-10 VGG of LQ-Nets, Zhang et al. 2018, used by IR-Net and BiBench).

Six 3x3 convs 128-128-M-256-256-M-512-512-M, each followed by BatchNorm and ReLU (in the
LQ-Nets/IR-Net order conv -> [max-pool] -> BN -> ReLU), then one fully connected layer from the
flattened 512 x (H/8) x (W/8) map to the classes. Convs have no bias (BN follows).

Parameters for CIFAR-10 (3x32x32, 10 classes): convs 4,574,592 + BN 3,584 + FC 81,930 =
4,660,106 (the "~4.6M" usually quoted).

Full-precision policy: only the first conv and the FC (first and last layers, kept by
binarize()); `keep_fp` is empty.
"""

from __future__ import annotations

from torch import Tensor, nn

from bibench.models import Architecture, register_architecture

VGG_SMALL_CFG: tuple[int | str, ...] = (128, 128, "M", 256, 256, "M", 512, 512, "M")


class VGGSmall(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, height: int, width: int,
                 cfg: tuple[int | str, ...] = VGG_SMALL_CFG) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i, item in enumerate(cfg):
            if item == "M":
                continue
            pool = i + 1 < len(cfg) and cfg[i + 1] == "M"
            layers.append(nn.Conv2d(channels, int(item), 3, 1, 1, bias=False))
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
                height, width = height // 2, width // 2
            layers += [nn.BatchNorm2d(int(item)), nn.ReLU()]
            channels = int(item)
        if height < 1 or width < 1:
            raise ValueError("VGG-Small needs inputs of at least 8x8 pixels")
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels * height * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x).flatten(1))


def vgg_small(input_shape: tuple[int, ...], num_classes: int, **kwargs) -> VGGSmall:
    c, h, w = input_shape
    return VGGSmall(c, num_classes, h, w, **kwargs)


register_architecture(
    Architecture(
        name="vgg_small",
        family="cnn",
        build=vgg_small,
        keep_fp=(),
        description="VGG-Small (LQ-Nets CIFAR VGG, 4.66M parameters for CIFAR-10)",
        paper_input=((3, 32, 32), 10),
    )
)
