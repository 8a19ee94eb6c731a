"""The MS/NMOSD joint model — Huang et al., "A joint model for lesion segmentation and classification of
MS and NMOSD", Front. Neurosci. 18:1351387 (2024), §3.2–3.4 (seed ``000``), in 3D, from scratch.

Three subnetworks and two interactions, every ablation of the paper's §4.4 a keyword argument:

* **Information-sharing subnetwork** (Fig. 4, Eqs. 1–4). Local branch: LayerNorm on the input, three
  3×3×3 convolutions, the first with stride 2 → ``C`` = 32 channels at S/2. Global branch: patch
  embedding (conv k8 s8, then average pooling k2 s2 → S/16 tokens), LayerNorm, two Swin Transformer
  layers on MONAI's ``BasicLayer`` (window 5³, the second shifted; MONAI shrinks the window to the token
  grid when S/16 < 5), trilinear interpolation back to S/2. Crossover unit (Eq. 4):
  ``f_seg = w_s1·local + w_s2·global``, ``f_cls = w_c1·local + w_c2·global``, four learnable scalars.
* **Segmentation subnetwork** (Fig. 5, Eq. 5): three encoding modules and two downsamplings
  (S/2 → S/8), three upsamplings and decoding blocks back to S with channel-concatenated skips, and
  a 1×1×1 side output at S/8, S/4, S/2 and S, nearest-upsampled to S and summed with weights
  0.25, 0.25, 0.5, 1; the sigmoid of the sum is the lesion probability map P.
* **Classification subnetwork** (Fig. 6, Eq. 6): three residual blocks with 64, 128, 256 channels;
  the global average pool of each block, concatenated (448 values), feeds one fully connected layer
  (softmax over MS = 0, NMOSD = 1).
* **Lesion Guidance Module** (Fig. 7, Eqs. 7–9): ``P' = f_P(P)`` (3×3×3 conv, stride 2, → S/2),
  ``α = sigmoid(P')``, ``D' = α ⊙ f_cls``, ``J = f_1×1(concat(f_3×3(P'), f_3×3(D')))`` with stride-2
  3×3×3 convolutions; J (at S/4) enters the classification subnetwork.
* **Cross-task loss** (Eqs. 10–11) in :class:`JointModelLoss`; total loss (Eq. 14)
  ``β1·L_seg + β2·L_cls + β3·L_cross`` with β = (1, 0.8, 1).

Ablation switches (one model, flags; Tables 5–9):

* ``share``: ``both`` (the paper), ``local`` / ``global`` (Table 7 "only local" / "only global": that
  branch alone, hard-shared by both tasks, no crossover), ``none`` (Table 7 "w/o share": no shared
  subnetwork; each task gets its own stem with the local branch's structure).
* ``lgm``: ``full`` (the paper), ``dot`` (J from D' alone), ``concat`` (J from P' and f_cls, no
  product), ``add`` (J from f_cls + P'), ``none`` (J from f_cls: no path from the segmentation
  output into the classifier). Every mode keeps the same stride-2 + 1×1 path to J, so the rows of
  Table 8 differ in the interaction only.
* ``cross_loss``: on/off (Table 9).
* ``heads``: ``joint``, ``seg_only`` / ``cls_only`` (Tables 5–6 "Only Seg / Only Cls Model": the
  information-sharing subnetwork and that one subnetwork; no LGM, no cross-task loss).

Deviations from the paper's equations, each a switch with the paper's behaviour one flag away (the
``ablation_cross_loss`` study runs both; docs/methods.md):

* ``cross_grad``: ``cam`` (default) stops Eq. 11's gradient at the segmentation maps S_i, so the cross-task
  loss pulls the CAMs towards the segmentation and not the segmentation towards the CAMs; ``both`` is
  Eq. 11 as written. Why: a min–max-normalised CAM always spans [0, 1], also on a lesion-free scan, so
  with ``both`` the coarse segmentation maps are pinned to a dense map (a review measured training Dice
  0.00 / 0.14 after 200 steps with it, 0.41 / 0.38 without, ≈ 0.39 with the gradient stop).
* ``guide_grad``: ``false`` (default) detaches the lesion map P where it enters the Lesion Guidance
  Module, so the classification loss does not train the segmentation subnetwork through P; ``true`` is the
  paper's graph. Why: at the start the classification gradient on the segmentation parameters through P
  is about 5× the Dice term's.
* ``cls_norm``: ``batch`` (default) or ``instance`` in the classification subnetwork's residual blocks,
  whose outputs are average-pooled. The paper does not name the norm; an InstanceNorm right before the
  pooling makes every pooled feature the same for every scan (:mod:`bench.nn.blocks`). ``instance`` is the
  suite's first version.

On the easy cohort at the ``cpu`` recipe (8 epochs, a validation split of fold 0's training set), the three
defaults together against the paper's graph with InstanceNorm: validation AUC 0.70 against 0.41 and DSC on
lesion scans 0.10 against 0.03.

Decisions taken here (the paper is silent; recorded in the closing notes too):

* "LayerNorm on the input" of a 1-channel volume is a per-sample LayerNorm over (C, D, H, W)
  (``GroupNorm(1, 1)``; a LayerNorm over one channel would map every voxel to 0).
* Convolution blocks are conv → InstanceNorm (affine) → LeakyReLU (:mod:`bench.nn.blocks`), except in the
  classification subnetwork (``cls_norm``, above).
* The paper gives no channel counts for the segmentation subnetwork. Its encoding modules have 16, 32,
  64 channels at S/2, S/4, S/8 — the 3D UNet baseline's widths at the same resolutions, so Table 3
  compares the two at matched width there (the 3D UNet goes two levels deeper: at width 0.25 this model's
  segmentation path, the shared subnetwork included, has 34 k parameters, the 3D UNet 302 k) — and the
  last decoding block (at S) has 8. (A first version used
  32/64/128/16: 5.1 M parameters at paper size, and at the ``cpu`` profile a 0.37 s training step of
  which two thirds were the segmentation subnetwork; the study could not meet its time target.)
* The last decoding block (at S) has no encoder feature at its resolution; it takes the input image
  as its skip connection, and it is one conv block, not two: at S with 4–8 channels a 3×3×3 conv runs
  far below the CPU's throughput, and the second conv cost 29 ms of a 0.23 s training step at the
  ``cpu`` profile (the ``ablation_lgm`` demo took 22.3 min with it against a 20-minute target).
* The global branch's embedding has ``C`` channels and ``max(1, C // 16)`` attention heads.
* The final segmentation logit carries a learnable offset initialised to logit(0.01), as every
  segmentation baseline here (:class:`bench.outputs.SegmentationNet`); it does not change the model's
  function class and lets the short CPU schedules get past the all-background phase.
* The CAMs of the three classification blocks (S/4, S/8, S/16) are paired with the three coarser
  intermediate segmentation maps by resolution rank: block 3 ↔ S/8 map, block 2 ↔ S/4 map,
  block 1 ↔ S/2 map, so η = (0.25, 0.25, 0.5) equals Eq. 5's weights of the same maps.
* The intermediate segmentation map ``S_i`` is the sigmoid of that scale's side output; ``V_i`` is
  trilinearly resized to it and min–max normalised per sample; ``‖·‖²`` is the mean squared error
  (the paper calls it an MSE loss).
* L_seg = 1 − soft Dice computed over the whole batch (batch Dice, as the segmentation baselines), so
  lesion-free NMOSD scans do not push every voxel towards background on their own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import ConfigError
from bench.losses import MethodLoss, soft_dice_loss
from bench.nn.blocks import ResidualBlock, check_norm, conv_block, double_conv
from bench.nn.widths import scaled_channels
from bench.outputs import ModelOutput, prior_logit
from bench.registry import register_method

__all__ = ["JointModel", "JointModelLoss", "joint_model", "class_activation_maps", "cross_task_loss",
           "SHARE_MODES", "LGM_MODES", "HEADS"]

SHARE_MODES = ("both", "local", "global", "none")
LGM_MODES = ("full", "dot", "concat", "add", "none")
HEADS = ("joint", "seg_only", "cls_only")
CROSS_GRADS = ("cam", "both")  # Eq. 11's gradient: into the CAMs only, or into CAMs and segmentation maps (paper)
SCALE_WEIGHTS = (0.25, 0.25, 0.5, 1.0)  # Eq. 5: side outputs at S/8, S/4, S/2, S
CROSS_WEIGHTS = (0.25, 0.25, 0.5)  # Eq. 11: η for the S/8, S/4, S/2 maps
_HEAD_KIND = {"joint": "joint", "seg_only": "seg", "cls_only": "cls"}


class LocalBranch(nn.Sequential):
    """Eq. 3: ``CTX_local = Conv(LN(I))``; three 3×3×3 convolutions, the first with stride 2."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.GroupNorm(1, cin), conv_block(cin, cout, stride=2), conv_block(cout, cout), conv_block(cout, cout))


class GlobalBranch(nn.Module):
    """Eqs. 1–2: ``CTX_global = UP(ST(LN(PE(I))))`` on MONAI's Swin blocks."""

    def __init__(self, cin: int, dim: int, *, window: int = 5) -> None:
        from monai.networks.nets.swin_unetr import BasicLayer  # here, not at the top: registering imports no MONAI

        super().__init__()
        self.embed = nn.Conv3d(cin, dim, kernel_size=8, stride=8)
        self.pool = nn.AvgPool3d(2, 2)
        self.norm = nn.LayerNorm(dim)
        self.swin = BasicLayer(dim=dim, depth=2, num_heads=max(1, dim // 16), window_size=(window,) * 3,
                               drop_path=[0.0, 0.0], qkv_bias=True)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.pool(self.embed(image))
        tokens = self.norm(tokens.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        out = self.swin(tokens.contiguous())
        half = tuple(s // 2 for s in image.shape[2:])
        return F.interpolate(out, size=half, mode="trilinear", align_corners=False)


class SharingSubnetwork(nn.Module):
    """The information-sharing subnetwork: (f_seg, f_cls), each [B, C, S/2, S/2, S/2]."""

    def __init__(self, cin: int, channels: int, share: str, *, need_seg: bool = True, need_cls: bool = True) -> None:
        super().__init__()
        self.share = share
        self.need_seg, self.need_cls = need_seg, need_cls
        if share == "none":  # "w/o share": an unshared stem per task
            self.seg_stem = LocalBranch(cin, channels) if need_seg else None
            self.cls_stem = LocalBranch(cin, channels) if need_cls else None
            return
        self.local = LocalBranch(cin, channels) if share in ("both", "local") else None
        self.global_ = GlobalBranch(cin, channels) if share in ("both", "global") else None
        if share == "both":  # Eq. 4's crossover unit
            self.w_seg = nn.Parameter(torch.tensor([0.5, 0.5])) if need_seg else None
            self.w_cls = nn.Parameter(torch.tensor([0.5, 0.5])) if need_cls else None

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if self.share == "none":
            return (self.seg_stem(image) if self.need_seg else None, self.cls_stem(image) if self.need_cls else None)
        if self.share == "local":
            ctx = self.local(image)
            return ctx, ctx
        if self.share == "global":
            ctx = self.global_(image)
            return ctx, ctx
        local, global_ = self.local(image), self.global_(image)
        f_seg = self.w_seg[0] * local + self.w_seg[1] * global_ if self.need_seg else None
        f_cls = self.w_cls[0] * local + self.w_cls[1] * global_ if self.need_cls else None
        return f_seg, f_cls


class SegmentationSubnetwork(nn.Module):
    """Fig. 5 and Eq. 5. Returns (final logits at S, side logits at S/8, S/4, S/2, S)."""

    def __init__(self, cin: int, channels: Sequence[int], image_channels: int, *, prior: float = 0.01) -> None:
        super().__init__()
        c1, c2, c3, c0 = channels  # S/2, S/4, S/8 encoders; S decoder
        self.enc1, self.enc2, self.enc3 = double_conv(cin, c1), double_conv(c1, c2), double_conv(c2, c3)
        self.down = nn.MaxPool3d(2)
        self.up3 = nn.ConvTranspose3d(c3, c2, 2, stride=2)
        self.dec3 = double_conv(2 * c2, c2)
        self.up2 = nn.ConvTranspose3d(c2, c1, 2, stride=2)
        self.dec2 = double_conv(2 * c1, c1)
        self.up1 = nn.ConvTranspose3d(c1, c0, 2, stride=2)
        self.dec1 = conv_block(c0 + image_channels, c0)  # one conv block at S (module docstring)
        self.side = nn.ModuleList(nn.Conv3d(c, 1, 1) for c in (c3, c2, c1, c0))
        self.offset = nn.Parameter(torch.tensor(prior_logit(prior)))

    def forward(self, f_seg: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        e1 = self.enc1(f_seg)  # S/2
        e2 = self.enc2(self.down(e1))  # S/4
        e3 = self.enc3(self.down(e2))  # S/8
        d3 = self.dec3(torch.cat([self.up3(e3), e2], 1))  # S/4
        d2 = self.dec2(torch.cat([self.up2(d3), e1], 1))  # S/2
        d1 = self.dec1(torch.cat([self.up1(d2), image], 1))  # S
        sides = [conv(f) for conv, f in zip(self.side, (e3, d3, d2, d1))]
        size = image.shape[2:]
        fused = sum(w * F.interpolate(s, size=size, mode="nearest") for w, s in zip(SCALE_WEIGHTS, sides))
        return fused + self.offset, sides


class ClassificationSubnetwork(nn.Module):
    """Fig. 6 and Eq. 6. Returns (logits, [block feature maps])."""

    def __init__(self, cin: int, channels: Sequence[int], num_classes: int, *, norm: str = "batch") -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.blocks = nn.ModuleList([ResidualBlock(cin, c1, stride=1, norm=norm), ResidualBlock(c1, c2, stride=2, norm=norm),
                                     ResidualBlock(c2, c3, stride=2, norm=norm)])
        self.fc = nn.Linear(c1 + c2 + c3, num_classes)

    def forward(self, j: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features, x = [], j
        for block in self.blocks:
            x = block(x)
            features.append(x)
        pooled = torch.cat([f.mean(dim=(2, 3, 4)) for f in features], 1)
        return self.fc(pooled), features

    def weight_slices(self) -> list[torch.Tensor]:
        """The FC weight [K, N_i] acting on each block's pooled features."""
        sizes = [f.body[0][0].out_channels for f in self.blocks]
        return list(torch.split(self.fc.weight, sizes, dim=1))


class LesionGuidance(nn.Module):
    """Fig. 7, Eqs. 7–9, and the ablation modes of Table 8. Output J at S/4."""

    def __init__(self, channels: int, prob_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        self.mode = mode
        if mode != "none":
            self.f_p = nn.Conv3d(1, 1, 3, stride=2, padding=1)  # Eq. 7's f_P: S → S/2
        self.f_d = conv_block(channels, channels, stride=2)  # f_3×3 on D' (or f_cls / f_cls + P')
        in_fuse = channels
        if mode in ("full", "concat"):
            self.f_pp = conv_block(1, prob_channels, stride=2)  # f_3×3 on P'
            in_fuse += prob_channels
        self.fuse = conv_block(in_fuse, out_channels, kernel=1)  # f_1×1

    def forward(self, f_cls: torch.Tensor, prob: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "none":
            return self.fuse(self.f_d(f_cls))
        p_small = self.f_p(prob)  # P'
        if self.mode == "add":
            return self.fuse(self.f_d(f_cls + p_small))
        if self.mode == "concat":
            return self.fuse(torch.cat([self.f_pp(p_small), self.f_d(f_cls)], 1))
        d_prime = torch.sigmoid(p_small) * f_cls  # Eqs. 7–8
        if self.mode == "dot":
            return self.fuse(self.f_d(d_prime))
        return self.fuse(torch.cat([self.f_pp(p_small), self.f_d(d_prime)], 1))  # Eq. 9


def class_activation_maps(features: Sequence[torch.Tensor], weights: Sequence[torch.Tensor],
                          classes: torch.Tensor) -> list[torch.Tensor]:
    """Eq. 10: ``V_i = Σ_k F_{i,k} · w^c_{i,k}`` per sample, for class ``classes[b]``.

    Args:
        features: block feature maps F_i, each [B, N_i, d, h, w].
        weights: FC weight slices, each [K, N_i].
        classes: long [B], the class c of each sample.
    Returns:
        One map [B, 1, d, h, w] per block, not normalised.
    """
    return [torch.einsum("bkdhw,bk->bdhw", f, w[classes]).unsqueeze(1) for f, w in zip(features, weights)]


def minmax(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Min–max normalisation per sample to [0, 1]."""
    flat = x.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (x - low.view(shape)) / (high - low).clamp_min(eps).view(shape)


def resized_minmax(v: torch.Tensor, size) -> torch.Tensor:
    """A CAM trilinearly resized to ``size`` and min–max normalised per sample (Eq. 11's V_i)."""
    return minmax(F.interpolate(v, size=size, mode="trilinear", align_corners=False))


def cross_task_loss(seg_maps: Sequence[torch.Tensor], cams: Sequence[torch.Tensor],
                    eta: Sequence[float] = CROSS_WEIGHTS, *, detach_seg: bool = False) -> torch.Tensor:
    """Eq. 11: ``Σ_i η_i · MSE(S_i, minmax(resize(V_i)))``.

    Args:
        seg_maps: intermediate segmentation probability maps S_i, each [B, 1, d_i, h_i, w_i].
        cams: the CAM V_i paired with each, any spatial size (trilinearly resized to S_i's).
        detach_seg: stop the gradient into S_i (the CAM is pulled towards the segmentation, the segmentation
            is not pulled towards the CAM); False is the paper's Eq. 11.
    """
    total = seg_maps[0].new_zeros(())
    for weight, s, v in zip(eta, seg_maps, cams):
        total = total + weight * F.mse_loss(s.detach() if detach_seg else s, resized_minmax(v, s.shape[2:]))
    return total


class JointModel(nn.Module):
    """The joint model with its ablation switches (see the module docstring).

    Args:
        in_channels: input channels (1: T2-FLAIR).
        num_classes: 2 (MS, NMOSD).
        width: channel multiplier (1.0 = the paper's 32-channel shared features).
        share, lgm, cross_loss, heads: the ablation switches.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: float = 1.0, *, share: str = "both",
                 lgm: str = "full", cross_loss: bool = True, heads: str = "joint", cls_norm: str = "batch",
                 cross_grad: str = "cam", guide_grad: bool = False) -> None:
        super().__init__()
        self.share, self.lgm_mode, self.cross_loss, self.heads = share, lgm, bool(cross_loss), heads
        self.cross_grad, self.guide_grad = cross_grad, bool(guide_grad)
        self.has_seg, self.has_cls = heads in ("joint", "seg_only"), heads in ("joint", "cls_only")
        c, c_prob = scaled_channels((32, 8), width)
        self.sharing = SharingSubnetwork(in_channels, c, share, need_seg=self.has_seg, need_cls=self.has_cls)
        if self.has_seg:
            self.segmentation = SegmentationSubnetwork(c, scaled_channels((16, 32, 64, 8), width), in_channels)
        if self.has_cls:
            self.guidance = LesionGuidance(c, c_prob, c, lgm)
            self.classification = ClassificationSubnetwork(c, scaled_channels((64, 128, 256), width), num_classes,
                                                           norm=cls_norm)

    def forward(self, image: torch.Tensor) -> ModelOutput:
        f_seg, f_cls = self.sharing(image)
        seg_logits = cls_logits = None
        aux: dict = {}
        if self.has_seg:
            seg_logits, sides = self.segmentation(f_seg, image)
            aux["seg_maps"] = [torch.sigmoid(s) for s in sides[:3]]  # S_1..S_3 at S/8, S/4, S/2
        if self.has_cls:
            prob = torch.sigmoid(seg_logits) if self.lgm_mode != "none" else None
            if prob is not None and not self.guide_grad:
                prob = prob.detach()  # the classification loss does not train the segmentation through P
            cls_logits, features = self.classification(self.guidance(f_cls, prob))
            # CAMs paired by resolution rank with S_1..S_3: blocks 3, 2, 1
            aux["cls_features"] = features[::-1]
            aux["cls_weights"] = self.classification.weight_slices()[::-1]
            aux["cross_loss"] = self.cross_loss and self.has_seg
            aux["cross_detach_seg"] = self.cross_grad == "cam"
            if not self.training:
                aux["cam"] = self.localisation_map(features, cls_logits.argmax(1), image.shape[2:])
        return ModelOutput(seg_logits=seg_logits, cls_logits=cls_logits, aux=aux)

    @torch.no_grad()
    def localisation_map(self, features: list[torch.Tensor], classes: torch.Tensor, size) -> torch.Tensor:
        """The lesion localisation map (Fig. 12) for ``classes``: the η-weighted mean of the three
        min–max-normalised CAMs, at the input size, in [0, 1]. [B, 1, D, H, W]."""
        cams = class_activation_maps(features, self.classification.weight_slices(), classes)
        eta = CROSS_WEIGHTS[::-1]  # blocks 1, 2, 3 carry η 0.5, 0.25, 0.25
        maps = [w * resized_minmax(v, size) for w, v in zip(eta, cams)]
        return sum(maps) / sum(eta)


class JointModelLoss(MethodLoss):
    """Eq. 14: ``β1·L_seg + β2·L_cls + β3·L_cross``, β = (1, 0.8, 1); L_seg = 1 − batch soft Dice,
    L_cls = cross-entropy, L_cross = Eq. 11 with CAMs of the ground-truth class (0 when the model has
    the cross-task loss switched off or lacks a head)."""

    def __init__(self, seg: float = 1.0, cls: float = 0.8, cross: float = 1.0) -> None:
        super().__init__(seg=seg, cls=cls, cross=cross)

    def terms(self, out, batch, *, progress):
        zero = (out.seg_logits if out.has_seg else out.cls_logits).new_zeros(())
        terms = {"seg": zero, "cls": zero, "cross": zero}
        if out.has_seg:
            terms["seg"] = soft_dice_loss(torch.sigmoid(out.seg_logits[:, 0]), batch["mask"][:, 0].float(), batch=True)
        if out.has_cls:
            labels = batch["label"].long()
            terms["cls"] = F.cross_entropy(out.cls_logits, labels)
            if out.aux.get("cross_loss"):
                cams = class_activation_maps(out.aux["cls_features"], out.aux["cls_weights"], labels)
                terms["cross"] = cross_task_loss(out.aux["seg_maps"], cams, detach_seg=out.aux.get("cross_detach_seg", False))
        return terms


def _kind(model_args) -> str:
    heads = model_args.get("heads", "joint")
    return _HEAD_KIND.get(heads, "joint")


def _choice(name: str, value, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"method 'joint_model': model_args.{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


@register_method(
    "joint_model",
    kind="joint",
    kind_for=_kind,
    loss=JointModelLoss,
    search_space={"seg": (0.1, 10.0), "cls": (0.1, 10.0), "cross": (0.1, 10.0)},
    size_multiple=16,
)
def joint_model(in_channels: int, num_classes: int, spatial_size: int, width: float, *, share: str = "both",
                lgm: str | None = None, cross_loss: bool | None = None, heads: str = "joint", cls_norm: str = "batch",
                cross_grad: str = "cam", guide_grad: bool = False) -> JointModel:
    """MS/NMOSD joint model (Huang 2024): shared conv+Swin, seg + cls subnetworks, LGM, cross-task CAM loss."""
    _choice("heads", heads, HEADS)
    _choice("share", share, SHARE_MODES)
    check_norm("joint_model", "cls_norm", cls_norm)
    _choice("cross_grad", cross_grad, CROSS_GRADS)
    if not isinstance(guide_grad, bool):
        raise ConfigError(f"method 'joint_model': model_args.guide_grad must be true or false; got {guide_grad!r}")
    if heads != "joint":
        if lgm not in (None, "none") or cross_loss:
            raise ConfigError(f"method 'joint_model': heads={heads} has no second task, so lgm and cross_loss "
                              f"must be left unset; got lgm={lgm!r}, cross_loss={cross_loss!r}")
        lgm, cross_loss = "none", False
    lgm = _choice("lgm", "full" if lgm is None else lgm, LGM_MODES)
    if not isinstance(cross_loss if cross_loss is not None else True, bool):
        raise ConfigError(f"method 'joint_model': model_args.cross_loss must be true or false; got {cross_loss!r}")
    return JointModel(in_channels, num_classes, width, share=share, lgm=lgm,
                      cross_loss=True if cross_loss is None else cross_loss, heads=heads, cls_norm=cls_norm,
                      cross_grad=cross_grad, guide_grad=guide_grad)
