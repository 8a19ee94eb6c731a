"""DSI-Net — "DSI-Net: Deep Synergistic Interaction Network for Joint Classification and Segmentation
with Endoscope Images" (Zhu, Chen & Yuan, IEEE TMI 40(12), 2021, https://arxiv.org/abs/2109.07578),
ported to 3D from the official code ``CityU-AIM-Group/DSI-Net`` (``net/models.py``, ``net/modules.py``),
UML's Table 1 joint baseline.

Data flow (as the official ``DSI_Net.forward``; S = input size):

* **Backbone** (stands in for the DeepLabv3+ Xception at output stride 8): a stride-2 stem → S/2, a
  residual block → S/4 (the *low-level* feature), a residual block → S/8 (the *middle* feature that
  the classifier reads), a dilated residual block at S/8 (the *exit* feature), then ASPP.
* **Coarse segmentation**: ASPP → dropout → ×2 upsampling, concatenated with the projected low-level
  feature → coarse head → 2 logits (background, lesion) at S/4.
* **Lesion location mining** (LLM): the coarse mask's softmax at S/8 picks the top-K lesion and the
  top-K background positions of the middle feature; each set of K prototypes is weighted by a binary
  gate unit (a 1×1×1 conv "meta learner", two FC layers, and a straight-through Gumbel-sigmoid gate:
  noise in training, a hard ``x ≥ 0`` threshold in evaluation); the max cosine similarity of the
  lesion prototypes to the background positions (and vice versa) gives two attention maps, and
  ``f ← f + f ⊙ (mask_lesion − att_back + att_fore)``.
* **Classification**: three dilated depthwise-separable convs → global average pooling → a linear layer
  without bias.
* **Global prototypes** (GPG): the classifier's weight rows (detached) through a small MLP, scaled by the
  predicted class probabilities (detached).
* **Category-guided feature generation** (CFG): three EM steps of local prototypes from the coarse
  mask, three of the global prototypes, each giving a context map; concatenated and projected.
* **Fine segmentation**: ASPP ×2 ⊕ context ×2 ⊕ low-level feature → fine head → 2 logits at S/4.
  Both segmentations are upsampled ×4 to S; the fine one is the method's prediction.
* **Loss** (official ``train_DSI_Net.py``): ``CE + Dice(fine) + Dice(coarse) + α·L_interaction``, each
  Dice the mean of the background and lesion Dice of the softmax.

Changes for two *disease* classes (docs/methods.md): the official GPG takes class 0 ("normal") as the
background prototype and scales the abnormal classes' rows by their probabilities. Here both classes
(MS, NMOSD) are lesion categories, so both rows become foreground prototypes, each scaled by its class
probability, and the background prototype is a learned vector. The task-interaction loss compares
"class 0 vs the rest" with "background vs lesion" in the segmentation, which means nothing when class 0
is a disease: it is implemented as in the official code but its weight ``interaction`` is 0 by default.

Other decisions taken here:

* Widths are reduced from Xception's (2048/1024/256) to 32/64/128/256 channels at S/2, S/4, S/8, S/8
  (exit), ASPP 128, low-level projection 24, heads 128, classifier 256, 32 prototype channels — all at
  width 1 and scaled by ``width``.
* Normalisation is InstanceNorm (batch 2), except in the classifier head, whose output is average-pooled:
  BatchNorm there, as the official ``cls_head`` (``cls_norm``; an InstanceNorm before the pooling makes
  the pooled features the same for every scan, :mod:`bench.nn.blocks`); ``cls_norm: instance`` gives the
  suite's first version. The prototype MLP uses LayerNorm where the official code applies BatchNorm
  across the 2–3 class prototypes.
* The segmentation heads' dropouts are element-wise (``nn.Dropout(0.5)`` and ``(0.1)``), as the official
  heads; a first version used channel-wise ``Dropout3d``, which at 64 head channels drops whole feature
  maps. The category-guided feature module keeps channel-wise dropout.
* ASPP dilations: the official 6/12/18 on a 32-position feature map (256 px at output stride 8) are
  scaled to the 3D map: ``max(1, round(g · r / 32))`` for a grid of g positions per axis (1/2/3 at 48³,
  4/8/11 at 160³). Likewise K, the number of mined prototypes, keeps the official ratio of 100 per
  32² positions: ``K = max(1, round(g³ · 100 / 1024))`` (21 at 48³, 781 at 160³).
* Both segmentation heads' last bias starts at (0, logit(0.01)): the prior initialisation every
  segmentation network of the suite gets (:class:`bench.outputs.SegmentationNet`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.losses import MethodLoss, soft_dice_loss
from bench.nn.blocks import ResidualBlock, check_norm, conv_block, pointwise_block, separable_block
from bench.nn.widths import scaled_channels
from bench.outputs import ModelOutput, prior_logit
from bench.registry import register_method

__all__ = ["DSINet", "DSINetLoss", "LesionLocationMining", "BinaryGateUnit", "GlobalPrototypes",
           "CategoryGuidedFeatures", "ASPP", "interaction_loss", "dsi_net"]

OFFICIAL_GRID = 32  # the official 256-px input at output stride 8
OFFICIAL_K = 100
OFFICIAL_RATES = (6, 12, 18)
EM_STEPS = 3


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1×1×1 branch, three dilated 3×3×3 branches, image pooling."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, int, int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([pointwise_block(cin, cout)] + [conv_block(cin, cout, dilation=r) for r in rates])
        self.pool = nn.Sequential(nn.Conv3d(cin, cout, 1), nn.LeakyReLU(0.01, inplace=True))
        self.project = pointwise_block(5 * cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x.mean(dim=(2, 3, 4), keepdim=True)).expand(-1, -1, *x.shape[2:])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], 1))


class GumbelGate(nn.Module):
    """Straight-through Gumbel-sigmoid gate (official ``net/gumbel.py``, factor 1, noise on)."""

    def __init__(self, factor: float = 1.0) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return (x >= 0).to(x.dtype)
        u = torch.rand_like(x)
        soft = torch.sigmoid((x - torch.log(-torch.log(u + 1e-8) + 1e-8)) / self.factor)
        return ((soft >= 0.5).to(x.dtype) - soft).detach() + soft


class BinaryGateUnit(nn.Module):
    """Weights K prototypes [B, C, K] by a 0/1 gate each → [B, 1, K]."""

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        hidden = math.ceil(k / 2)
        self.score = nn.Sequential(nn.Conv1d(channels, 1, 1, bias=False), nn.ReLU(inplace=True))
        self.fc1, self.fc2 = nn.Linear(k, hidden), nn.Linear(hidden, k)
        self.gate = GumbelGate()

    def forward(self, prototypes: torch.Tensor) -> torch.Tensor:
        w = self.score(prototypes)[:, 0]  # [B, K]
        return self.gate(self.fc2(self.fc1(torch.relu(w)))).unsqueeze(1)


def _cross_attention(prototypes: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Max over K of the ReLU'd cosine similarity of prototypes [B, C, K] to feats [B, C, N] → [B, 1, N]."""
    sim = torch.bmm(prototypes.transpose(1, 2), feats)
    norm = torch.bmm(prototypes.norm(dim=1).unsqueeze(2), feats.norm(dim=1, keepdim=True))
    return torch.relu(sim / (norm + 1e-8)).amax(dim=1, keepdim=True)


class LesionLocationMining(nn.Module):
    """LLM: top-K prototype mining from the coarse mask, gated, cross-region attention.

    Args:
        channels: channels of the feature map it refines.
        k: prototypes mined per region (must not exceed the map's number of positions).
    """

    def __init__(self, channels: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.gate_fore, self.gate_back = BinaryGateUnit(channels, k), BinaryGateUnit(channels, k)

    def forward(self, feats: torch.Tensor, soft_mask: torch.Tensor) -> torch.Tensor:
        """feats [B, C, d, h, w]; soft_mask [B, 2, d, h, w] (background, lesion) → refined feats."""
        b, c = feats.shape[:2]
        flat, mask = feats.flatten(2), soft_mask.flatten(2)
        if self.k > flat.shape[2]:
            raise ValueError(f"LesionLocationMining: k={self.k} exceeds the {flat.shape[2]} feature positions")
        hard = mask.argmax(1, keepdim=True)
        fore_feats, back_feats = flat * (hard == 1), flat * (hard == 0)

        def mined(region: torch.Tensor, gate: BinaryGateUnit) -> torch.Tensor:
            idx = region.topk(self.k, dim=-1).indices.expand(-1, c, -1)  # [B, C, K]
            prototypes = flat.gather(2, idx)
            return prototypes * gate(prototypes)

        fore_att = _cross_attention(mined(mask[:, 1:], self.gate_fore), back_feats)  # lesion-like background
        back_att = _cross_attention(mined(mask[:, :1], self.gate_back), fore_feats)  # background-like lesion
        refined = flat + flat * (mask[:, 1:] - back_att + fore_att)
        return refined.view_as(feats)


class GlobalPrototypes(nn.Module):
    """GPG for two disease classes: a learned background prototype and one prototype per class, made
    from the classifier's weight rows and scaled by the predicted class probability → [B, 1 + K, P]."""

    def __init__(self, cin: int, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(cin, channels), nn.LayerNorm(channels), nn.ReLU(inplace=True),
                                 nn.Linear(channels, channels))
        self.background = nn.Parameter(torch.randn(channels) / math.sqrt(channels))

    def forward(self, class_weights: torch.Tensor, cls_logits: torch.Tensor) -> torch.Tensor:
        prototypes = self.mlp(class_weights)  # [K, P]
        fore = torch.softmax(cls_logits, dim=1).unsqueeze(2) * prototypes  # [B, K, P]
        back = self.background.expand(fore.shape[0], 1, -1)
        return torch.cat([back, fore], 1)


def _normalise(prototypes: torch.Tensor) -> torch.Tensor:
    """As the official code: divide by the norm over axis 1 of [B, M, P] (the prototype axis)."""
    return prototypes / (1e-8 + prototypes.norm(dim=1, keepdim=True))


def _assign(prototypes: torch.Tensor, feats: torch.Tensor, scale: float) -> torch.Tensor:
    """Soft assignment [B, M, N] of the positions feats [B, N, P] to prototypes [B, M, P]."""
    mask = torch.softmax(scale * torch.bmm(prototypes, feats.transpose(1, 2)), dim=1)
    return mask / (1e-8 + mask.sum(dim=1, keepdim=True))


def local_context(mask: torch.Tensor, feats: torch.Tensor, scale: float) -> torch.Tensor:
    """EM from the coarse mask [B, M, N]: prototypes from the assignment, then re-assign → [B, P, N]."""
    for _ in range(EM_STEPS):
        prototypes = _normalise(torch.bmm(mask, feats))
        mask = _assign(prototypes, feats, scale)
    return torch.bmm(prototypes.transpose(1, 2), mask)


def global_context(prototypes: torch.Tensor, feats: torch.Tensor, scale: float) -> torch.Tensor:
    """EM from the global prototypes [B, M, P]: assign, then update the prototypes → [B, P, N]."""
    prototypes = _normalise(prototypes)
    for _ in range(EM_STEPS):
        mask = _assign(prototypes, feats, scale)
        prototypes = _normalise(torch.bmm(mask, feats))
    return torch.bmm(prototypes.transpose(1, 2), mask)


class CategoryGuidedFeatures(nn.Module):
    """CFG: local (coarse-mask) and global (class) prototypes, three EM steps each → context map."""

    def __init__(self, cin: int, channels: int) -> None:
        super().__init__()
        self.channels = channels

        def embed():
            return nn.Sequential(pointwise_block(cin, channels), nn.Dropout3d(0.2), pointwise_block(channels, channels), nn.Dropout3d(0.1))

        self.local_embed, self.global_embed = embed(), embed()
        self.fuse = nn.Sequential(pointwise_block(2 * channels, channels), nn.Dropout3d(0.2))

    def forward(self, x: torch.Tensor, coarse_mask: torch.Tensor, global_prototypes: torch.Tensor) -> torch.Tensor:
        b, spatial = x.shape[0], x.shape[2:]
        scale = self.channels ** -0.5
        local = self.local_embed(x).flatten(2).transpose(1, 2)  # [B, N, P]
        context_l = local_context(coarse_mask.flatten(2), local, scale)
        glob = self.global_embed(x).flatten(2).transpose(1, 2)
        context_g = global_context(global_prototypes, glob, scale)
        context = torch.cat([context_l, context_g], 1).view(b, 2 * self.channels, *spatial)
        return self.fuse(context)


def _seg_head(cin: int, mid: int, prior: float) -> nn.Sequential:
    head = nn.Sequential(conv_block(cin, mid), nn.Dropout(0.5), conv_block(mid, mid), nn.Dropout(0.1),
                         nn.Conv3d(mid, 2, 1))
    with torch.no_grad():
        head[-1].bias.copy_(torch.tensor([0.0, prior_logit(prior)]))
    return head


class DSINet(nn.Module):
    """DSI-Net in 3D (see the module docstring).

    Args:
        in_channels: input channels.
        num_classes: disease classes (2).
        spatial_size: input size S (sets K and the ASPP dilations); divisible by 8.
        width: channel multiplier.
        k: mined prototypes per region (default: the official ratio, module docstring).
        cls_norm: the classifier head's norm, ``batch`` (official) or ``instance``.
    """

    def __init__(self, in_channels: int, num_classes: int, spatial_size: int, width: float = 1.0, *,
                 k: int | None = None, prior: float = 0.01, cls_norm: str = "batch") -> None:
        super().__init__()
        if spatial_size % 8:
            raise ValueError(f"DSINet: spatial_size must be divisible by 8 (output stride 8), got {spatial_size}")
        grid = spatial_size // 8
        self.k = k if k is not None else max(1, round(grid**3 * OFFICIAL_K / OFFICIAL_GRID**2))
        if not 1 <= self.k <= grid**3:
            raise ValueError(f"DSINet: k must be in [1, {grid ** 3}] (positions at S/8), got {self.k}")
        rates = tuple(max(1, round(grid * r / OFFICIAL_GRID)) for r in OFFICIAL_RATES)
        c1, c2, c3, c4, ca, cs, ch, cc, cp = scaled_channels((32, 64, 128, 256, 128, 24, 128, 256, 32), width)
        self.stem = nn.Sequential(conv_block(in_channels, c1, stride=2), conv_block(c1, c1))  # S/2
        self.low = ResidualBlock(c1, c2, stride=2)  # S/4
        self.middle = ResidualBlock(c2, c3, stride=2)  # S/8
        self.exit = ResidualBlock(c3, c4, dilation=2)  # S/8
        self.aspp = ASPP(c4, ca, rates)
        self.shortcut = pointwise_block(c2, cs)
        self.dropout = nn.Dropout(0.5)
        self.coarse_head = _seg_head(ca + cs, ch, prior)
        self.fine_head = _seg_head(ca + cp + cs, ch, prior)
        self.llm = LesionLocationMining(c3, self.k)
        self.cls_head = nn.Sequential(*(separable_block(a, cc, norm=cls_norm) for a in (c3, cc, cc)))
        self.cls_predict = nn.Linear(cc, num_classes, bias=False)
        self.gpg = GlobalPrototypes(cc, cp)
        self.cfg = CategoryGuidedFeatures(ca, cp)

    def forward(self, image: torch.Tensor) -> ModelOutput:
        low = self.low(self.stem(image))
        middle = self.middle(low)
        aspp = self.aspp(self.exit(middle))
        shallow = self.shortcut(low)
        up = F.interpolate(self.dropout(aspp), scale_factor=2, mode="trilinear", align_corners=False)
        seg_coarse = self.coarse_head(torch.cat([up, shallow], 1))  # S/4
        mask = F.interpolate(torch.softmax(seg_coarse, 1), size=middle.shape[2:], mode="trilinear",
                             align_corners=False)
        cls_feats = self.cls_head(self.llm(middle, mask))
        cls_logits = self.cls_predict(cls_feats.mean(dim=(2, 3, 4)))
        prototypes = self.gpg(self.cls_predict.weight.detach(), cls_logits.detach())
        context = F.interpolate(self.cfg(aspp, mask, prototypes), scale_factor=2, mode="trilinear", align_corners=False)
        # a second dropout draw for the fine branch, as the official forward
        up_fine = F.interpolate(self.dropout(aspp), scale_factor=2, mode="trilinear", align_corners=False)
        seg_fine = self.fine_head(torch.cat([up_fine, context, shallow], 1))
        size = image.shape[2:]
        seg_fine, seg_coarse = (F.interpolate(s, size=size, mode="trilinear", align_corners=False)
                                for s in (seg_fine, seg_coarse))
        return ModelOutput(seg_logits=seg_fine, cls_logits=cls_logits, aux={"seg_coarse": seg_coarse})


def two_class_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official ``Dice_Loss``: mean of the background and lesion soft-Dice losses of the softmax
    (each a batch Dice here, as every segmentation loss of the suite). logits [B, 2, ...], target [B, ...]."""
    prob = torch.softmax(logits, dim=1)
    return 0.5 * (soft_dice_loss(prob[:, 0], 1.0 - target, batch=True) + soft_dice_loss(prob[:, 1], target, batch=True))


def interaction_loss(cls_logits: torch.Tensor, seg_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The official task-interaction loss, for a label set whose class 0 means "no lesion".

    Classification logits are collapsed to (class 0, the rest) by summing logits as the official code
    does; the segmentation's image-level logits are the log-sum-exp of each channel over the voxels
    divided by their number; each direction's KL divergence counts only where the source task's
    decision is right. Mean over the batch of half the sum.
    """
    b = cls_logits.shape[0]
    cls_pred = torch.stack([cls_logits[:, 0], cls_logits[:, 1:].sum(1)], 1)
    seg_pred = torch.logsumexp(seg_logits.flatten(2), dim=2) / seg_logits[0, 0].numel()
    normal = labels.long() == 0
    seg_cls = F.kl_div(torch.log_softmax(cls_pred, -1), torch.softmax(seg_pred, -1), reduction="none").sum(-1)
    cls_seg = F.kl_div(torch.log_softmax(seg_pred, -1), torch.softmax(cls_pred, -1), reduction="none").sum(-1)
    right_cls = ((cls_pred[:, 0] > cls_pred[:, 1]) == normal).float()
    right_seg = ((seg_pred[:, 0] > seg_pred[:, 1]) == normal).float()
    return (cls_seg * right_cls + seg_cls * right_seg).sum() / 2.0 / b


class DSINetLoss(MethodLoss):
    """``ce·CE + fine·Dice(fine) + coarse·Dice(coarse) + interaction·L_int`` (official weights 1, 1, 1;
    the interaction weight is 0 here by default, module docstring)."""

    def __init__(self, ce: float = 1.0, fine: float = 1.0, coarse: float = 1.0, interaction: float = 0.0) -> None:
        super().__init__(ce=ce, fine=fine, coarse=coarse, interaction=interaction)

    def terms(self, out, batch, *, progress):
        target, labels = batch["mask"][:, 0].float(), batch["label"].long()
        terms = {"ce": F.cross_entropy(out.cls_logits, labels),
                 "fine": two_class_dice_loss(out.seg_logits, target),
                 "coarse": two_class_dice_loss(out.aux["seg_coarse"], target)}
        terms["interaction"] = (interaction_loss(out.cls_logits, out.seg_logits, labels) if self.weights["interaction"]
                                else terms["ce"].new_zeros(()))
        return terms


@register_method(
    "dsi_net",
    kind="joint",
    loss=DSINetLoss,
    search_space={"ce": (0.1, 10.0), "fine": (0.1, 10.0), "coarse": (0.1, 10.0)},
    size_multiple=16,
)
def dsi_net(in_channels: int, num_classes: int, spatial_size: int, width: float, *, k: int | None = None,
            cls_norm: str = "batch"):
    """DSI-Net (Zhu 2021) in 3D: coarse/fine seg, lesion location mining, global prototypes, CFG."""
    check_norm("dsi_net", "cls_norm", cls_norm)
    return DSINet(in_channels, num_classes, spatial_size, width, k=k, cls_norm=cls_norm)
