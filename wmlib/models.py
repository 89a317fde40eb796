"""Model registry: ``build(name, in_channels, num_classes)``.

The architectures used by the five papers: LeNets for (Fashion-)MNIST, the Carlini & Wagner nets
that Zhang et al. 2018 train ("the model setting in [10]"), He et al.'s CIFAR ResNet-20/32
(Namba & Sakuma, GradSigns), ResNet-18/34 and PreActResNet-18 with a CIFAR stem, VGG-11/13/16 with
batch norm, MobileNetV2 (Li et al.'s CIFAR hosts), and the 6-conv SVHN net of GradSigns Table 8. Every model takes images scaled to [0, 1].
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """Every conv and linear layer of ``model``: the weights that pruning, quantisation, exponential
    weighting and random masking act on."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def classifier(model: nn.Module) -> nn.Linear:
    """The classifier: the model's last conv / linear layer, which must be linear."""
    layers = weight_layers(model)
    if not layers or not isinstance(layers[-1], nn.Linear):
        raise ValueError(f"{type(model).__name__}'s last conv / linear layer is not a linear classifier")
    return layers[-1]


def feature_layers(model: nn.Module) -> list[nn.Module]:
    """Every conv and linear layer but the classifier (:func:`classifier`, left whole): the layers
    Wen et al.'s code prunes and masks (``pruning.py``: LeNet-5's conv1, conv2, fc1 and fc2;
    ResNet-18's convolutions)."""
    head = classifier(model)
    return [m for m in weight_layers(model) if m is not head]


def neuron_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose output channels are a backdoor defence's neurons (ANP's, neural laundering's):
    every ``BatchNorm2d`` / ``BatchNorm1d`` where the model has batch norm (ANP's ``NoisyBatchNorm``),
    else every conv and linear layer but the classifier (:func:`feature_layers`)."""
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d))]
    return norms or feature_layers(model)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (same module, same state) whose 2x2 / stride-2 case on even CPU inputs, where
    no gradient is needed (evaluation, queries), is two halving maxima: the same values, and about 5x
    faster than PyTorch's NCHW kernel on small channel counts (LeNet's 6 and 16). Where a gradient
    flows, it is PyTorch's kernel, so training and every derivative (GradSigns' second one too) are
    PyTorch's own; a custom autograd function measured slower in training."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not (torch.is_grad_enabled() and x.requires_grad) and x.device.type == "cpu"
                and self.kernel_size in (2, (2, 2)) and self.stride in (2, (2, 2)) and self.padding in (0, (0, 0))
                and self.dilation in (1, (1, 1)) and not self.return_indices
                and x.dim() == 4 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0):
            return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                                 torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))
        return super().forward(x)


class AdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that passes an input already of the output size through: the mean of
    one element is that element, so the values and gradients are unchanged and two kernel calls per
    step are saved (LeNet's pool to 5x5 sees 5x5 maps on 28x28 images)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size if isinstance(self.output_size, tuple) else (self.output_size,) * 2
        if tuple(x.shape[-2:]) == tuple(size):
            return x
        return super().forward(x)


def _conv_relu(cin: int, cout: int, k: int = 3, pad: int = 1, bn: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.ReLU(inplace=True)]


def _mlp(sizes: list[int], dropout: float = 0.0) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if dropout and i > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return layers


def lenet(variant: int, in_channels: int, num_classes: int) -> nn.Sequential:
    """LeNet-1 (conv 4-12, fc 10), LeNet-3 (conv 6-16, fc 10) and LeNet-5 (conv 6-16, fc 120-84-10).

    LeCun et al. 1998 widths; ``padding=2`` on the first conv makes a 28x28 input behave as the
    original 32x32, and an adaptive pool makes 32x32 (CIFAR) inputs fit the same head.
    """
    c1, c2, head = {1: (4, 12, [10]), 3: (6, 16, [10]), 5: (6, 16, [120, 84, 10])}[variant]
    head = head[:-1] + [num_classes]
    return nn.Sequential(
        nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), MaxPool2d(2),
        AdaptiveAvgPool2d(5), *_mlp([c2 * 25] + head))


def carlini_wagner(in_channels: int, num_classes: int) -> nn.Sequential:
    """Carlini & Wagner 2017's MNIST (grey) / CIFAR (RGB) nets, which Zhang et al. 2018 train (§5.1)."""
    w1, w2, fc, spatial = (32, 64, 200, 4) if in_channels == 1 else (64, 128, 256, 5)
    return nn.Sequential(
        *_conv_relu(in_channels, w1, pad=0), *_conv_relu(w1, w1, pad=0), MaxPool2d(2),
        *_conv_relu(w1, w2, pad=0), *_conv_relu(w2, w2, pad=0), MaxPool2d(2),
        AdaptiveAvgPool2d(spatial), *_mlp([w2 * spatial * spatial, fc, fc, num_classes], dropout=0.5))


def svhn_6conv(in_channels: int, num_classes: int) -> nn.Sequential:
    """GradSigns Table 8: 3x3 convs 32-32-64-64-128-128 + FC 512; a 2x2 max-pool after each pair
    (the table lists no pooling; without it the FC layer would have 131k inputs per unit)."""
    return nn.Sequential(
        *_conv_relu(in_channels, 32), *_conv_relu(32, 32), MaxPool2d(2),
        *_conv_relu(32, 64), *_conv_relu(64, 64), MaxPool2d(2),
        *_conv_relu(64, 128), *_conv_relu(128, 128), MaxPool2d(2),
        AdaptiveAvgPool2d(4), *_mlp([128 * 16, 512, num_classes]))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, option_a: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        self.stride, self.pad = stride, 0
        if stride != 1 or cin != cout:
            if option_a:  # He et al. 2016 §4.2 option A: strided identity, zero-padded channels
                self.pad = cout - cin
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad:
            sc = nn.functional.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.pad))
        else:
            sc = self.shortcut(x)
        return torch.relu(out + sc)


class ResNet(nn.Module):
    """CIFAR ResNets: ``depth`` 20/32 (He et al. 2016 §4.2, 3 stages of 16-32-64) or 18 / 34 (4 stages
    of 64-512 with a 3x3 stem, as commonly used for CIFAR; Li et al. 2019 host both)."""

    def __init__(self, depth: int, in_channels: int, num_classes: int):
        super().__init__()
        if depth in (18, 34):
            widths, option_a = [64, 128, 256, 512], False
            blocks = [2, 2, 2, 2] if depth == 18 else [3, 4, 6, 3]
        elif (depth - 2) % 6 == 0:
            n = (depth - 2) // 6
            widths, blocks, option_a = [16, 32, 64], [n, n, n], True
        else:
            raise ValueError(f"unsupported ResNet depth {depth}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        layers, cin = [], widths[0]
        for i, (w, b) in enumerate(zip(widths, blocks)):
            for j in range(b):
                layers.append(BasicBlock(cin, w, 2 if (j == 0 and i > 0) else 1, option_a))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


class PreActBlock(nn.Module):
    """He et al. 2016b (identity mappings): BN-ReLU-conv3x3, BN-ReLU-conv3x3; a 1x1 projection of
    the pre-activated input where the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.relu(self.bn1(x))
        skip = self.shortcut(a) if self.shortcut is not None else x
        return self.conv2(torch.relu(self.bn2(self.conv1(a)))) + skip


class PreActResNet18(nn.Module):
    """PreActResNet-18 for 32x32 inputs (a 3x3 stem; 4 stages of 64-512, 2 blocks each), one of
    Li et al. 2019's CIFAR-10 hosts."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        layers, cin = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)], 64
        for i, w in enumerate((64, 128, 256, 512)):
            for j in range(2):
                layers.append(PreActBlock(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.layers = nn.Sequential(*layers, nn.BatchNorm2d(cin), nn.ReLU(inplace=True))
        self.head = nn.Sequential(AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x))


class InvertedResidual(nn.Module):
    """Sandler et al. 2018: 1x1 expansion (ratio t), 3x3 depthwise, 1x1 linear projection; a skip
    connection when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                   nn.ReLU6(inplace=True), nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block, self.skip = nn.Sequential(*layers), stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.skip else self.block(x)


def mobilenet_v2(in_channels: int, num_classes: int) -> nn.Sequential:
    """MobileNetV2 (Sandler et al. 2018, Table 2) for 32x32 inputs, one of Li et al. 2019's CIFAR-10
    hosts: the first conv and the second stage keep stride 1, as is usual for CIFAR."""
    stages = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True)]
    cin = 32
    for t, c, n, s in stages:
        for i in range(n):
            layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
            cin = c
    layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6(inplace=True),
               AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, num_classes)]
    return nn.Sequential(*layers)


_VGG = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
        16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]}


def vgg(depth: int, in_channels: int, num_classes: int) -> nn.Sequential:
    """VGG-11/13/16 (Simonyan & Zisserman 2015) with batch norm and a single linear head for 32x32."""
    layers: list[nn.Module] = []
    cin = in_channels
    for v in _VGG[depth]:
        if v == "M":  # ceil_mode lets 28x28 inputs survive all five pools
            layers.append(MaxPool2d(2, ceil_mode=True))
        else:
            layers += _conv_relu(cin, int(v), bn=True)
            cin = int(v)
    return nn.Sequential(*layers, AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))


REGISTRY: dict[str, Callable[[int, int], nn.Module]] = {
    "lenet1": lambda c, k: lenet(1, c, k),
    "lenet3": lambda c, k: lenet(3, c, k),
    "lenet5": lambda c, k: lenet(5, c, k),
    "cw": carlini_wagner,
    "resnet18": lambda c, k: ResNet(18, c, k),
    "resnet20": lambda c, k: ResNet(20, c, k),
    "resnet34": lambda c, k: ResNet(34, c, k),
    "preactresnet18": PreActResNet18,
    "mobilenetv2": mobilenet_v2,
    "resnet32": lambda c, k: ResNet(32, c, k),
    "vgg11": lambda c, k: vgg(11, c, k),
    "vgg13": lambda c, k: vgg(13, c, k),
    "vgg16": lambda c, k: vgg(16, c, k),
    "svhn6conv": svhn_6conv,
}


def build(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """A freshly initialised model; an unknown name lists the valid ones."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(REGISTRY))}") from None
    if in_channels not in (1, 3) or num_classes < 2:
        raise ValueError(f"expected 1 or 3 input channels and >= 2 classes, got {in_channels}, {num_classes}")
    return factory(in_channels, num_classes)


class ConvAutoencoder(nn.Module):
    """Namba & Sakuma 2019, Table 4: three stride-2 3x3 convs (16-32-64, BN, ReLU) and three stride-2
    3x3 transposed convs (32-16-C, BN, ReLU; sigmoid last). ``output_padding`` is chosen so that the
    output has the input's size (28x28 or 32x32)."""

    def __init__(self, channels: int, image_size: int):
        super().__init__()
        sizes = [image_size]
        for _ in range(3):
            sizes.append((sizes[-1] - 1) // 2 + 1)  # k3, s2, p1
        enc, cin = [], channels
        for w in (16, 32, 64):
            enc += [nn.Conv2d(cin, w, 3, 2, 1), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            cin = w
        dec = []
        for i, w in enumerate((32, 16, channels)):
            target, src = sizes[2 - i], sizes[3 - i]
            dec += [nn.ConvTranspose2d(cin, w, 3, 2, 1, output_padding=target - (2 * src - 1)), nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True) if i < 2 else nn.Sigmoid()]
            cin = w
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
