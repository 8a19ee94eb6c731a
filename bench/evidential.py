"""Evidential deep learning: subjective-logic outputs and losses shared by EC, TBraTS and UML.

An evidential head outputs non-negative evidence ``e = softplus(logits)`` per class; the Dirichlet
parameters are ``α = e + 1``, the strength ``S = Σ_k α_k``, the belief masses ``b_k = e_k / S``, the
uncertainty ``u = K / S`` (so ``Σ_k b_k + u = 1``) and the expected class probability ``p_k = α_k / S``
(Sensoy et al., NeurIPS 2018; Han et al., "Trusted Multi-View Classification", ICLR 2021 — TMC;
UML, seed ``004`` Eqs. 1–3 and §2.4).

The loss (TMC Eq. 6, UML §2.4) is the expected cross-entropy under the Dirichlet ("digamma loss")
plus an annealed KL divergence that shrinks the misleading evidence towards the uniform Dirichlet:

    L = Σ_k y_k (ψ(S) − ψ(α_k)) + λ_t · KL(Dir(α̃) ‖ Dir(1)),   α̃ = y + (1 − y) ⊙ α,
    λ_t = min(1, t / T_anneal).

Decision (docs/methods.md): the official UML code anneals over 50 of its 100 epochs; the suite scales that to
the study's budget, ``λ = min(1, progress / 0.5)`` with ``progress = epoch / epochs``, and EC and TBraTS use
the same schedule (UML's Table 1 trains them under UML's protocol).

Example:
    >>> import torch
    >>> alpha = dirichlet_alpha(torch.tensor([[0.0, 2.0]]))
    >>> opinion = subjective_opinion(alpha)
    >>> float((opinion.belief.sum(1) + opinion.uncertainty)[0])
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.losses import MethodLoss, soft_dice_loss
from bench.outputs import ModelOutput, Prediction

__all__ = [
    "ANNEAL_FRACTION",
    "dirichlet_alpha",
    "subjective_opinion",
    "Opinion",
    "digamma_loss",
    "kl_to_uniform",
    "annealing_factor",
    "evidential_loss",
    "EvidentialClassificationLoss",
    "EvidentialSegmentationLoss",
]

ANNEAL_FRACTION = 0.5


def dirichlet_alpha(logits: torch.Tensor) -> torch.Tensor:
    """``α = softplus(logits) + 1`` (class axis 1), the official codes' evidence activation."""
    return F.softplus(logits) + 1.0


@dataclass(frozen=True)
class Opinion:
    """A subjective-logic opinion over K classes (class axis 1).

    Attributes:
        belief: ``e / S``, same shape as α.
        uncertainty: ``K / S``, α's shape without the class axis.
        prob: ``α / S``, the expected probability, same shape as α.
    """

    belief: torch.Tensor
    uncertainty: torch.Tensor
    prob: torch.Tensor


def subjective_opinion(alpha: torch.Tensor) -> Opinion:
    """Belief masses, uncertainty and expected probabilities of Dirichlet parameters ``alpha`` [B, K, ...]."""
    strength = alpha.sum(1, keepdim=True)
    return Opinion(belief=(alpha - 1.0) / strength, uncertainty=(alpha.shape[1] / strength).squeeze(1),
                   prob=alpha / strength)


def digamma_loss(alpha: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """``Σ_k y_k (ψ(S) − ψ(α_k))`` per sample/voxel: the cross-entropy's expectation under Dir(α)."""
    return (onehot * (torch.digamma(alpha.sum(1, keepdim=True)) - torch.digamma(alpha))).sum(1)


def kl_to_uniform(alpha: torch.Tensor) -> torch.Tensor:
    """``KL(Dir(α) ‖ Dir(1))`` per sample/voxel (class axis 1).

    ``= ln Γ(S) − Σ_k ln Γ(α_k) − ln Γ(K) + Σ_k (α_k − 1)(ψ(α_k) − ψ(S))``.
    """
    k = alpha.shape[1]
    strength = alpha.sum(1, keepdim=True)
    log_norm = torch.lgamma(strength).squeeze(1) - torch.lgamma(alpha).sum(1) - torch.lgamma(alpha.new_tensor(float(k)))
    return log_norm + ((alpha - 1.0) * (torch.digamma(alpha) - torch.digamma(strength))).sum(1)


def annealing_factor(progress: float, fraction: float = ANNEAL_FRACTION) -> float:
    """``λ_t = min(1, progress / fraction)``; ``progress`` = epoch / epochs in [0, 1]."""
    return min(1.0, max(0.0, progress) / fraction)


def evidential_loss(alpha: torch.Tensor, target: torch.Tensor, *, progress: float) -> torch.Tensor:
    """Mean over samples (and voxels) of the digamma loss plus the annealed KL of the misleading evidence.

    Args:
        alpha: float [B, K] or [B, K, D, H, W], Dirichlet parameters.
        target: long [B] or [B, D, H, W], class indices.
        progress: epoch / epochs, sets λ_t.
    """
    onehot = F.one_hot(target.long(), alpha.shape[1]).movedim(-1, 1).to(alpha.dtype)
    alpha_tilde = onehot + (1.0 - onehot) * alpha
    return (digamma_loss(alpha, onehot) + annealing_factor(progress) * kl_to_uniform(alpha_tilde)).mean()


class EvidentialClassificationLoss(MethodLoss):
    """EC / TMC: the evidential loss on the image-level evidence (``cls_logits`` are pre-softplus)."""

    def __init__(self, edl: float = 1.0) -> None:
        super().__init__(edl=edl)

    def terms(self, out: ModelOutput, batch: Mapping[str, torch.Tensor], *, progress: float) -> dict[str, torch.Tensor]:
        return {"edl": evidential_loss(dirichlet_alpha(out.cls_logits), batch["label"], progress=progress)}

    def predict(self, out: ModelOutput) -> Prediction:
        opinion = subjective_opinion(dirichlet_alpha(out.cls_logits))
        return Prediction(cls_prob=opinion.prob, cls_uncertainty=opinion.uncertainty)


class EvidentialSegmentationLoss(MethodLoss):
    """TBraTS: the evidential loss per voxel plus soft Dice on the expected lesion probability ``α₁ / S``.

    Decision (docs/methods.md): the official code's Dice on α itself can collapse to zero (TBraTS issue #9);
    the Dice here is on α/S, and it is a batch Dice like every segmentation baseline of the suite.
    """

    def __init__(self, edl: float = 1.0, dice: float = 1.0) -> None:
        super().__init__(edl=edl, dice=dice)

    def terms(self, out, batch, *, progress):
        alpha = dirichlet_alpha(out.seg_logits)
        target = batch["mask"][:, 0]
        prob = subjective_opinion(alpha).prob[:, 1]
        return {"edl": evidential_loss(alpha, target, progress=progress),
                "dice": soft_dice_loss(prob, target.float(), batch=True)}

    def predict(self, out: ModelOutput) -> Prediction:
        opinion = subjective_opinion(dirichlet_alpha(out.seg_logits))
        return Prediction(seg_prob=opinion.prob[:, 1], seg_uncertainty=opinion.uncertainty)
