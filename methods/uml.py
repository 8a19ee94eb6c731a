"""UML — "Uncertainty-informed Mutual Learning for Joint Medical Image Classification and Segmentation"
(Ren, Zou, Liu, Chen, Fu et al., MICCAI 2023; seed ``004``), in 3D, from the paper and its official code
``KarryRen/UML`` (the 2023 version: ``models/UMLNet.py``, ``models/modules.py``, ``models/loss/``).

Data flow (S = input size; every feature list holds four scales, S/2 … S/16 by default, S … S/8 with
``first_stride=1``; the outputs are upsampled to S):

* **Two encoders** (§2): a VGG16-BN-style *segmentation* encoder (2, 2, 3, 3 conv blocks per stage,
  max-pooling between stages) and a Res2Net-style *classification* encoder (a full-resolution stem,
  then two Res2Net bottleneck blocks per stage, scale 4: each block splits its bottleneck into four
  channel groups, convolves them hierarchically — ``y₂ = K₂(x₂), y₃ = K₃(x₃ + y₂), …`` — and the first
  block of a stage strides). Only their first four stages are used, as the paper.
* **Feature mixer** per scale (pairwise channel-map interaction, [29]): a 1×1×1 conv of each task's
  feature, concatenation, channel shuffle with 4 groups, polarized self-attention (the channel-only
  branch then the spatial-only branch on its output, summed — the official sequential layout), a 1×1×1
  conv back to the segmentation encoder's width; the bottom scale keeps the PSA output.
* **Mutual decoder** (MD): a U-Net decoder over the mutual features → 2-class evidence
  ``e = softplus(·)`` at full size; ``α^s = e + 1``, the initial mask ``M = α^s`` and the pixel-wise
  uncertainty ``U^s = 2 / S`` (Eq. 3).
* **Uncertainty Navigator** (UN, Eqs. 4–5): the bottom feature ``Cat(f₄^s, f₄^m) ⊗ exp(−d³(U^s))``; a
  U-Net decoder over the segmentation encoder's skips gives one 2-class output per scale
  ``s₄ … s₁`` (deep supervision); at the bottom and the top, the reliable mask
  ``M^r = (s_i ⊕ M) ⊗ exp(−U^s)`` goes through a 1×1×1 conv and is concatenated with the feature
  (then a 1×1×1 conv). ``s₁`` is the method's segmentation; ``r^s`` is the top feature.
* **Uncertainty Instructor** (UI, Eq. 6): the classification head (dilated separable convs over
  ``Cat(f₄^c, f₄^m)``) gives ``f``; ``r^c = f ⊕ (Conv(d³(r^s)) ⊗ f)``; global average pooling, a linear
  layer without bias → evidence ``e^c``, ``α^c = e^c + 1``, image-level uncertainty ``U^c = 2 / T^c``.
* **Loss** (Eqs. 7–10, official ``seg_evidence_loss``, ``seg_dice_loss``, ``cls_evidence_loss``):
  ``L = w^m·L_m + w^c·L_c + w^s·L_s`` with (w^m, w^c, w^s) = (0.1, 0.5, 0.4), registered as the weights
  ``mutual``, ``cls``, ``seg``. ``L_m`` = digamma loss + annealed KL per voxel + Dice of softmax(evidence);
  ``L_c`` = digamma loss + annealed KL; ``L_s`` = the mean Dice of the four outputs upsampled to S.
  The Dice is the official one: per class (background, lesion) on the softmax, pooled over the batch,
  ``mean_c −log(Dice_c)``.
* **Prediction**: lesion probability = softmax(s₁); pixel-wise uncertainty = ``U^s`` of the mutual
  decoder (the map of the paper's Fig. 3); class probability ``α^c / T^c`` (docs/methods.md: used for AUC and
  calibration) and ``U^c``.

Ablation switches (one model, flags): ``mutual_decoder`` (MD), ``un`` and ``ui`` (Table 3). With UN off the
decoder keeps its skips, its four outputs and the bottom concatenation with the mutual feature, but uses
neither ``M`` nor ``U^s`` (no reliable mask, no ``exp(−U^s)``); with UI off ``r^c = f``. UN needs the mutual
decoder (it reads ``M`` and ``U^s``): ``mutual_decoder=False`` with ``un=True`` is refused. Without MD the
mutual loss is zero and there is no pixel-wise uncertainty. The loss-composition study (Table S1) sets the
weights of ``seg`` and ``mutual`` to 0.

Decisions taken here:

* Widths (width 1): segmentation encoder 16/32/64/128, classification encoder 16/64/128/256 (the paper's
  VGG16 64/128/256/512 and Res2Net-50 64/256/512/1024, divided by 4 to fit 3D volumes); mixer widths
  equal the segmentation encoder's (the paper's 256 per task; the bottom keeps the paper's ratio, the
  mixed bottom feature has the segmentation encoder's width); Res2Net depth 2 blocks per stage instead of
  (3, 4, 6). Trainable InstanceNorm everywhere (docs/methods.md: the official frozen BatchNorm means no
  normalisation when training from scratch; batch 2 rules out BatchNorm).
* ``first_stride`` 2 (default): both encoders' first stage strides (Res2Net's stem does; VGG's first block
  does not), so the top scale is S/2 and ``s₁`` and the mutual evidence are upsampled (trilinear) to S.
  At full resolution (``first_stride: 1``, the paper's layout) a training step at 48³, width 0.25, batch 2,
  one thread took 0.95 s instead of 0.23 s — full-size 3×3×3 convolutions with a handful of channels are
  the slow path of CPU convolution — which would put a 4-arm ``cpu`` study far past its 20-minute target.
* ``M = α^s`` as the paper's text (the official code adds the evidence ``α^s − 1``).
* ``d³`` (three down-samplings) is trilinear interpolation to the S/8 grid, as the official
  ``Upsample(scale_factor=1/8)``.
* The four navigator outputs start at the suite's lesion prior (bias (0, logit 0.01)), like every
  softmax segmentation head here; the evidential mutual head starts at α = 1 (no offset), like TBraTS.
* The KL annealing runs over half the budget (λ = min(1, progress / 0.5); docs/methods.md scales the official
  50 of 100 epochs). The official lr schedule (constant, then poly) and weight decay are not used: one
  training budget per study (docs/methods.md).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from bench.evidential import dirichlet_alpha, evidential_loss, subjective_opinion
from bench.losses import MethodLoss
from bench.nn.blocks import check_norm, conv_block, pointwise_block, separable_block
from bench.nn.widths import scaled_channels
from bench.outputs import ModelOutput, Prediction, prior_logit
from bench.registry import register_method

__all__ = ["UML", "UMLLoss", "PolarizedSelfAttention", "FeatureMixer", "Res2NetBlock", "UncertaintyNavigator",
           "UncertaintyInstructor", "channel_shuffle", "reliable_mask", "log_dice_loss", "uml"]

SEG_CHANNELS = (16, 32, 64, 128)  # VGG16-BN stages / 4
CLS_CHANNELS = (16, 64, 128, 256)  # Res2Net-50 stages / 4
VGG_CONVS = (2, 2, 3, 3)
RES2NET_SCALE = 4
RES2NET_BLOCKS = 2
SHUFFLE_GROUPS = 4
WEIGHTS = {"mutual": 0.1, "cls": 0.5, "seg": 0.4}  # Eq. 10


def channel_shuffle(x: torch.Tensor, groups: int = SHUFFLE_GROUPS) -> torch.Tensor:
    """ShuffleNet's channel shuffle as the official code: view the C channels as (C / g, g), transpose."""
    b, c = x.shape[:2]
    if c % groups:
        raise ValueError(f"channel_shuffle: {c} channels are not divisible by {groups} groups")
    return x.reshape(b, c // groups, groups, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


class PolarizedSelfAttention(nn.Module):
    """Polarized self-attention (Liu et al. 2021), sequential layout of the official code, in 3D.

    Channel branch: ``w_c = σ(LN(W_z(W_v(x) · softmax(W_q(x)))))`` over positions, ``x_c = w_c ⊙ x``.
    Spatial branch on ``x_c``: ``w_s = σ(GAP(W_q'(x_c)) · W_v'(x_c))``, and the output is ``w_s ⊙ x_c + x_c``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"PolarizedSelfAttention needs an even channel count, got {channels}")
        half = channels // 2
        self.ch_v, self.ch_q = nn.Conv3d(channels, half, 1), nn.Conv3d(channels, 1, 1)
        self.ch_z, self.ln = nn.Conv3d(half, channels, 1), nn.LayerNorm(channels)
        self.sp_v, self.sp_q = nn.Conv3d(channels, half, 1), nn.Conv3d(channels, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        value = self.ch_v(x).flatten(2)  # [B, C/2, N]
        query = torch.softmax(self.ch_q(x).flatten(2), dim=-1)  # [B, 1, N]
        z = torch.bmm(value, query.transpose(1, 2))  # [B, C/2, 1]
        weight = torch.sigmoid(self.ln(self.ch_z(z[..., None, None]).flatten(1)))  # [B, C]
        channel_out = x * weight.view(b, c, 1, 1, 1)
        value = self.sp_v(channel_out).flatten(2)  # [B, C/2, N]
        query = self.sp_q(channel_out).mean(dim=(2, 3, 4))[:, None]  # [B, 1, C/2]
        spatial = torch.sigmoid(torch.bmm(query, value)).view(b, 1, *x.shape[2:])
        return spatial * channel_out + channel_out


class FeatureMixer(nn.Module):
    """Per scale: 1×1×1 convs of both features, concatenation, channel shuffle, PSA, 1×1×1 conv (not at the bottom)."""

    def __init__(self, cls_channels, seg_channels, mixed) -> None:
        super().__init__()
        self.cls_convs = nn.ModuleList([pointwise_block(c, m) for c, m in zip(cls_channels, mixed)])
        self.seg_convs = nn.ModuleList([pointwise_block(c, m) for c, m in zip(seg_channels, mixed)])
        self.attention = nn.ModuleList([PolarizedSelfAttention(2 * m) for m in mixed])
        self.out_convs = nn.ModuleList([pointwise_block(2 * m, c) for m, c in zip(mixed[:-1], seg_channels[:-1])])

    def forward(self, cls_feats: list[torch.Tensor], seg_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        mixed = []
        for i, (fc, fs) in enumerate(zip(cls_feats, seg_feats)):
            f = self.attention[i](channel_shuffle(torch.cat([self.cls_convs[i](fc), self.seg_convs[i](fs)], 1)))
            mixed.append(self.out_convs[i](f) if i < len(self.out_convs) else f)
        return mixed


class Res2NetBlock(nn.Module):
    """A Res2Net bottleneck (Gao et al. 2019, ``26w_4s`` layout), 3D.

    1×1×1 conv to ``cout / 4`` channels, split into ``scale`` groups; groups 1 … scale−1 each get a 3×3×3
    conv block, hierarchically (``y_i = K_i(x_i + y_{i−1})``) in a normal block, independently and strided
    in the first block of a stage, where the last group is average-pooled instead of passed through; then
    concatenation, 1×1×1 conv to ``cout`` and a (projected, average-pooled) identity shortcut.
    """

    def __init__(self, cin: int, cout: int, *, stride: int = 1, scale: int = RES2NET_SCALE) -> None:
        super().__init__()
        mid = max(scale, cout // 4 // scale * scale)
        self.scale, self.split, self.first = scale, mid // scale, stride != 1 or cin != cout
        self.reduce = pointwise_block(cin, mid)
        self.convs = nn.ModuleList([conv_block(self.split, self.split, stride=stride) for _ in range(scale - 1)])
        self.pool = nn.AvgPool3d(3, stride=stride, padding=1) if self.first else nn.Identity()
        self.expand = nn.Sequential(nn.Conv3d(mid, cout, 1, bias=False), nn.InstanceNorm3d(cout, affine=True))
        self.skip = nn.Identity() if not self.first else nn.Sequential(
            nn.AvgPool3d(stride, stride) if stride > 1 else nn.Identity(),
            nn.Conv3d(cin, cout, 1, bias=False), nn.InstanceNorm3d(cout, affine=True))
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(self.reduce(x), self.split, dim=1)
        out, y = [], None
        for i, conv in enumerate(self.convs):
            y = conv(parts[i] if self.first or y is None else parts[i] + y)
            out.append(y)
        out.append(self.pool(parts[-1]))
        return self.act(self.expand(torch.cat(out, 1)) + self.skip(x))


def _vgg_stage(cin: int, cout: int, convs: int, *, downsample: str) -> nn.Sequential:
    """A VGG stage of ``convs`` conv blocks, after a 2× max-pooling (``pool``), with a strided first conv
    (``conv``, the input stage at ``first_stride`` 2) or at full size (``none``)."""
    layers: list[nn.Module] = [nn.MaxPool3d(2)] if downsample == "pool" else []
    layers += [conv_block(cin if i == 0 else cout, cout, stride=2 if i == 0 and downsample == "conv" else 1)
               for i in range(convs)]
    return nn.Sequential(*layers)


class _Up(nn.Module):
    """The official ``UNet_Up``: ×2 trilinear upsampling, concatenation with the skip, two conv blocks."""

    def __init__(self, cin: int, cskip: int, cout: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_block(cin + cskip, cout), conv_block(cout, cout))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="trilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], 1))


def reliable_mask(seg: torch.Tensor, mask: torch.Tensor, uncertainty: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``M^r = (s ⊕ M) ⊗ exp(−U^s)``; seg and mask [B, 2, ...], uncertainty [B, ...]."""
    return (seg + mask) * torch.exp(-uncertainty)[:, None]


class _ReliableFusion(nn.Module):
    """Eq. 5 at one scale (the official ``UN_ModuleConcat``): ``Conv(Cat(f, Conv(M^r)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.embed = nn.Sequential(pointwise_block(2, channels), nn.Dropout3d(0.1))
        self.fuse = pointwise_block(2 * channels, channels)

    def forward(self, feature, seg, mask, uncertainty):
        return self.fuse(torch.cat([feature, self.embed(reliable_mask(seg, mask, uncertainty))], 1))


def _down_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="trilinear", align_corners=False)


class UncertaintyNavigator(nn.Module):
    """The segmentation decoder with (``enabled``) or without the uncertainty navigation of Eqs. 4–5.

    Returns the four outputs ``[s₁ (S), s₂ (S/2), s₃ (S/4), s₄ (S/8)]`` and the top feature ``r^s``.
    """

    def __init__(self, seg_channels, bottom_mixed: int, *, enabled: bool, prior: float) -> None:
        super().__init__()
        c1, c2, c3, c4 = seg_channels
        self.enabled = enabled
        self.bottom = pointwise_block(c4 + bottom_mixed, c4)
        self.up3, self.up2, self.up1 = _Up(c4, c3, c3), _Up(c3, c2, c2), _Up(c2, c1, c1)
        self.heads = nn.ModuleList([nn.Conv3d(c, 2, 1) for c in (c1, c2, c3, c4)])
        with torch.no_grad():
            for head in self.heads:
                head.bias.copy_(torch.tensor([0.0, prior_logit(prior)]))
        self.fuse_bottom = _ReliableFusion(c4) if enabled else None
        self.fuse_top = _ReliableFusion(c1) if enabled else None

    def forward(self, seg_feats, bottom_mutual, mask=None, uncertainty=None):
        if self.enabled and (mask is None or uncertainty is None):
            raise ValueError("UncertaintyNavigator: navigation needs the mutual mask and uncertainty")
        f1, f2, f3, f4 = seg_feats
        feature = torch.cat([f4, bottom_mutual], 1)
        if self.enabled:
            u_small = _down_to(uncertainty[:, None], f4)
            feature = feature * torch.exp(-u_small)
        feature = self.bottom(feature)
        s4 = self.heads[3](feature)
        if self.enabled:
            feature = self.fuse_bottom(feature, s4, _down_to(mask, f4), u_small[:, 0])
        feature = self.up3(feature, f3)
        s3 = self.heads[2](feature)
        feature = self.up2(feature, f2)
        s2 = self.heads[1](feature)
        feature = self.up1(feature, f1)
        s1 = self.heads[0](feature)
        if self.enabled:
            feature = self.fuse_top(feature, s1, mask, uncertainty)
        return [s1, s2, s3, s4], feature


class UncertaintyInstructor(nn.Module):
    """The classifier with (``enabled``) or without Eq. 6's instruction by the reliable segmentation feature."""

    def __init__(self, cls_bottom: int, mixed_bottom: int, seg_top: int, num_classes: int, *, enabled: bool,
                 norm: str = "batch") -> None:
        super().__init__()
        c = cls_bottom
        self.head = nn.Sequential(separable_block(c + mixed_bottom, c, norm=norm), separable_block(c, c // 2, norm=norm),
                                  separable_block(c // 2, c // 2, norm=norm), separable_block(c // 2, c, norm=norm))
        self.instruct = nn.Sequential(conv_block(seg_top, c), conv_block(c, c)) if enabled else None
        self.predict = nn.Linear(c, num_classes, bias=False)

    def forward(self, cls_bottom, mixed_bottom, reliable_seg):
        feats = self.head(torch.cat([cls_bottom, mixed_bottom], 1))
        if self.instruct is not None:  # r^c = f ⊕ (Conv(d³(r^s)) ⊗ f)
            feats = feats + self.instruct(_down_to(reliable_seg, feats)) * feats
        return self.predict(feats.mean(dim=(2, 3, 4)))


class UML(nn.Module):
    """UML in 3D (see the module docstring).

    Args:
        in_channels: input channels.
        num_classes: disease classes.
        width: channel multiplier.
        mutual_decoder, un, ui: the Table 3 switches (MD, UN, UI).
        first_stride: 2 (default) starts both encoders at S/2, 1 at full size (the paper's layout).
        prior: initial lesion probability of the navigator outputs.
        cls_norm: the norm of the classifier head before its average pooling: ``batch`` (the official code's
            BatchNorm) or ``instance`` (the suite's first version; :mod:`bench.nn.blocks` says why it fails).
    """

    def __init__(self, in_channels: int, num_classes: int, width: float = 1.0, *, mutual_decoder: bool = True,
                 un: bool = True, ui: bool = True, first_stride: int = 2, prior: float = 0.01,
                 cls_norm: str = "batch") -> None:
        super().__init__()
        if un and not mutual_decoder:
            raise ValueError("un: true needs mutual_decoder: true — the Uncertainty Navigator reads the mutual "
                             "decoder's mask M and pixel-wise uncertainty U^s; set un: false for an arm without it")
        seg_ch = scaled_channels(SEG_CHANNELS, width)
        cls_ch = scaled_channels(CLS_CHANNELS, width)
        mixed = (*seg_ch[:3], seg_ch[3] // 2)
        mixed = tuple(max(2, m // 2 * 2) for m in mixed)  # even: the shuffle's 4 groups over 2m channels
        if first_stride not in (1, 2):
            raise ValueError(f"first_stride must be 1 or 2, got {first_stride!r}")
        self.first_stride = first_stride
        first = "conv" if first_stride == 2 else "none"
        self.seg_encoder = nn.ModuleList([_vgg_stage(in_channels if i == 0 else seg_ch[i - 1], c, n,
                                                     downsample=first if i == 0 else "pool")
                                          for i, (c, n) in enumerate(zip(seg_ch, VGG_CONVS))])
        stages: list[nn.Module] = [nn.Sequential(conv_block(in_channels, cls_ch[0], stride=first_stride),
                                                 conv_block(cls_ch[0], cls_ch[0]))]
        for cin, cout in zip(cls_ch[:-1], cls_ch[1:]):
            stages.append(nn.Sequential(Res2NetBlock(cin, cout, stride=2),
                                        *(Res2NetBlock(cout, cout) for _ in range(RES2NET_BLOCKS - 1))))
        self.cls_encoder = nn.ModuleList(stages)
        self.mixer = FeatureMixer(cls_ch, seg_ch, mixed)
        bottom_mixed = 2 * mixed[-1]
        mixed_out = (*seg_ch[:3], bottom_mixed)
        if mutual_decoder:
            self.mutual_ups = nn.ModuleList([_Up(mixed_out[3], mixed_out[2], mixed_out[2]),
                                             _Up(mixed_out[2], mixed_out[1], mixed_out[1]),
                                             _Up(mixed_out[1], mixed_out[0], mixed_out[0])])
            self.mutual_head = nn.Sequential(pointwise_block(mixed_out[0], mixed_out[0]), nn.Conv3d(mixed_out[0], 2, 1))
        else:
            self.mutual_ups, self.mutual_head = None, None
        self.navigator = UncertaintyNavigator(seg_ch, bottom_mixed, enabled=un, prior=prior)
        self.instructor = UncertaintyInstructor(cls_ch[3], bottom_mixed, seg_ch[0], num_classes, enabled=ui,
                                                norm=cls_norm)

    @staticmethod
    def _encode(stages: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, image: torch.Tensor) -> ModelOutput:
        seg_feats = self._encode(self.seg_encoder, image)
        cls_feats = self._encode(self.cls_encoder, image)
        mixed = self.mixer(cls_feats, seg_feats)
        aux: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        mask = uncertainty = None
        if self.mutual_head is not None:
            x = mixed[3]
            for up, skip in zip(self.mutual_ups, (mixed[2], mixed[1], mixed[0])):
                x = up(x, skip)
            mutual_logits = self.mutual_head(x)
            alpha = dirichlet_alpha(mutual_logits)
            mask, uncertainty = alpha, subjective_opinion(alpha).uncertainty
            aux["mutual_logits"] = self._full_size(mutual_logits, image)
        outputs, reliable = self.navigator(seg_feats, mixed[3], mask, uncertainty)
        cls_logits = self.instructor(cls_feats[3], mixed[3], reliable)
        aux["deep"] = outputs[1:]
        return ModelOutput(seg_logits=self._full_size(outputs[0], image), cls_logits=cls_logits, aux=aux)

    @staticmethod
    def _full_size(logits: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if logits.shape[2:] == image.shape[2:]:
            return logits
        return F.interpolate(logits, size=image.shape[2:], mode="trilinear", align_corners=False)


def log_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """The official ``SDiceLoss`` on a softmax: ``mean_c −log((2 Σ p_c y_c + ε) / (Σ p_c + Σ y_c + ε))``, sums pooled
    over the batch and every voxel, classes (background, lesion). logits [B, 2, ...], target [B, ...] in {0, 1}."""
    prob = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target.long(), prob.shape[1]).movedim(-1, 1).to(prob.dtype)
    dims = (0, *range(2, prob.ndim))
    dice = (2.0 * (prob * onehot).sum(dims) + eps) / (prob.sum(dims) + onehot.sum(dims) + eps)
    return -torch.log(dice).mean()


class UMLLoss(MethodLoss):
    """``mutual·L_m + cls·L_c + seg·L_s`` (Eq. 10; defaults 0.1, 0.5, 0.4). See the module docstring."""

    def __init__(self, mutual: float = WEIGHTS["mutual"], cls: float = WEIGHTS["cls"], seg: float = WEIGHTS["seg"]) -> None:
        super().__init__(mutual=mutual, cls=cls, seg=seg)

    def terms(self, out: ModelOutput, batch: Mapping[str, torch.Tensor], *, progress: float) -> dict[str, torch.Tensor]:
        target, labels = batch["mask"][:, 0], batch["label"]
        size = target.shape[1:]
        outputs = [out.seg_logits] + [F.interpolate(s, size=size, mode="trilinear", align_corners=False)
                                      for s in out.aux["deep"]]
        terms = {"cls": evidential_loss(dirichlet_alpha(out.cls_logits), labels, progress=progress),
                 "seg": sum(log_dice_loss(s, target) for s in outputs) / len(outputs)}
        mutual = out.aux.get("mutual_logits")
        terms["mutual"] = (evidential_loss(dirichlet_alpha(mutual), target, progress=progress)
                           + log_dice_loss(F.softplus(mutual), target)) if mutual is not None \
            else out.cls_logits.new_zeros(())
        return terms

    def predict(self, out: ModelOutput) -> Prediction:
        opinion = subjective_opinion(dirichlet_alpha(out.cls_logits))
        mutual = out.aux.get("mutual_logits")
        return Prediction(seg_prob=torch.softmax(out.seg_logits, dim=1)[:, 1], cls_prob=opinion.prob,
                          cls_uncertainty=opinion.uncertainty,
                          seg_uncertainty=subjective_opinion(dirichlet_alpha(mutual)).uncertainty if mutual is not None
                          else None)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"method 'uml': model_args.{name} must be true or false, got {value!r}")
    return value


@register_method(
    "uml",
    kind="joint",
    loss=UMLLoss,
    search_space={"mutual": (0.01, 1.0), "cls": (0.05, 5.0), "seg": (0.05, 5.0)},
    size_multiple=16,
)
def uml(in_channels: int, num_classes: int, spatial_size: int, width: float, *, mutual_decoder: bool = True,
        un: bool = True, ui: bool = True, first_stride: int = 2, cls_norm: str = "batch") -> UML:
    """UML (Ren 2023): two encoders, feature mixer, evidential mutual decoder, Uncertainty Navigator and Instructor."""
    flags = {"mutual_decoder": _flag("mutual_decoder", mutual_decoder), "un": _flag("un", un), "ui": _flag("ui", ui)}
    check_norm("uml", "cls_norm", cls_norm)
    try:
        return UML(in_channels, num_classes, width, first_stride=first_stride, cls_norm=cls_norm, **flags)
    except ValueError as exc:  # the class checks its switches; the study file names them as model_args
        raise ConfigError(f"method 'uml': model_args: {exc}") from None
