"""Evidential outputs and losses (EC, TBraTS; UML reuses them) against hand-computed values.

Hand values use ψ(n + 1) = ψ(n) + 1/n and Γ(n) = (n − 1)!: for α = (1, 3), S = 4,
ψ(4) − ψ(3) = 1/3, ψ(4) − ψ(1) = 11/6, and KL(Dir(1, 3) ‖ Dir(1, 1)) = ln Γ(4) − ln Γ(1) − ln Γ(3)
− ln Γ(2) + 2 (ψ(3) − ψ(4)) = ln 3 − 2/3 (= −H(Beta(1, 3)), the uniform density being 1).
"""

import math

import pytest
import torch

from bench.evidential import (
    EvidentialClassificationLoss,
    EvidentialSegmentationLoss,
    annealing_factor,
    digamma_loss,
    dirichlet_alpha,
    evidential_loss,
    kl_to_uniform,
    subjective_opinion,
)
from bench.outputs import ModelOutput

SOFTPLUS_INV_2 = math.log(math.e**2 - 1)  # softplus(x) = 2
KL_13 = math.log(3) - 2 / 3


def test_alpha_is_softplus_evidence_plus_one():
    alpha = dirichlet_alpha(torch.tensor([[SOFTPLUS_INV_2, -40.0]]))
    assert torch.allclose(alpha, torch.tensor([[3.0, 1.0]]), atol=1e-6)


def test_belief_and_uncertainty_sum_to_one():
    alpha = dirichlet_alpha(torch.randn(4, 2, 3, 3, 3) * 3)
    opinion = subjective_opinion(alpha)
    assert torch.allclose(opinion.belief.sum(1) + opinion.uncertainty, torch.ones(4, 3, 3, 3), atol=1e-6)
    assert torch.allclose(opinion.prob.sum(1), torch.ones(4, 3, 3, 3), atol=1e-6)
    one = subjective_opinion(torch.tensor([[1.0, 3.0]]))
    assert torch.allclose(one.uncertainty, torch.tensor([0.5])) and torch.allclose(one.prob, torch.tensor([[0.25, 0.75]]))


@pytest.mark.parametrize(("label", "expected"), [(1, 1 / 3), (0, 11 / 6)])
def test_digamma_loss(label, expected):
    onehot = torch.nn.functional.one_hot(torch.tensor([label]), 2).float()
    assert digamma_loss(torch.tensor([[1.0, 3.0]]), onehot).item() == pytest.approx(expected, rel=1e-5)


def test_kl_to_the_uniform_dirichlet():
    assert kl_to_uniform(torch.tensor([[1.0, 3.0], [3.0, 1.0]])).tolist() == pytest.approx([KL_13, KL_13], rel=1e-5)
    assert kl_to_uniform(torch.ones(1, 2)).item() == pytest.approx(0.0, abs=1e-6)
    # K = 3, α = (2, 1, 1): ln Γ(4) − ln Γ(2) − ln Γ(3) + (ψ(2) − ψ(4)) = ln 3 − (1/2 + 1/3)
    assert kl_to_uniform(torch.tensor([[2.0, 1.0, 1.0]])).item() == pytest.approx(math.log(3) - 5 / 6, rel=1e-5)


@pytest.mark.parametrize(("progress", "factor"), [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.9, 1.0)])
def test_annealing_reaches_one_halfway(progress, factor):
    assert annealing_factor(progress) == factor


def test_evidential_loss_anneals_the_kl_of_the_misleading_evidence():
    alpha = torch.tensor([[3.0, 1.0]])  # all evidence on class 0, the label is 1
    label = torch.tensor([1])
    # α̃ = y + (1 − y) α = (3, 1): the KL term is KL(Dir(3, 1)) = ln 3 − 2/3, weighted by λ
    assert evidential_loss(alpha, label, progress=0.0).item() == pytest.approx(11 / 6, rel=1e-5)
    assert evidential_loss(alpha, label, progress=0.25).item() == pytest.approx(11 / 6 + 0.5 * KL_13, rel=1e-5)
    # evidence on the right class is not penalised by the KL: α̃ = (1, 1)
    assert evidential_loss(alpha, torch.tensor([0]), progress=1.0).item() == pytest.approx(1 / 3, rel=1e-5)


def test_ec_loss_and_prediction():
    out = ModelOutput(cls_logits=torch.tensor([[SOFTPLUS_INV_2, -40.0]]))
    loss = EvidentialClassificationLoss()
    total, terms = loss(out, {"label": torch.tensor([1])}, progress=1.0)
    assert total.item() == pytest.approx(11 / 6 + KL_13, rel=1e-5) and set(terms) == {"edl"}
    pred = loss.predict(out)
    assert torch.allclose(pred.cls_prob, torch.tensor([[0.75, 0.25]]), atol=1e-6)
    assert torch.allclose(pred.cls_uncertainty, torch.tensor([0.5]), atol=1e-6)


def test_tbrats_loss_is_the_voxel_mean_plus_dice_on_alpha_over_s():
    # two voxels: (α = (3, 1), lesion) and (α = (1, 3), lesion)
    logits = torch.tensor([SOFTPLUS_INV_2, -40.0, -40.0, SOFTPLUS_INV_2]).view(2, 2).T.reshape(1, 2, 1, 1, 2)
    mask = torch.ones(1, 1, 1, 1, 2)
    loss = EvidentialSegmentationLoss()
    _, terms = loss(ModelOutput(seg_logits=logits), {"mask": mask}, progress=1.0)
    assert terms["edl"] == pytest.approx(((11 / 6 + KL_13) + 1 / 3) / 2, rel=1e-5)
    p = torch.tensor([0.25, 0.75])  # α₁ / S per voxel
    assert terms["dice"] == pytest.approx(1 - 2 * p.sum().item() / (p.sum().item() + 2), rel=1e-4)
    pred = loss.predict(ModelOutput(seg_logits=logits))
    assert torch.allclose(pred.seg_prob.flatten(), p) and torch.allclose(pred.seg_uncertainty.flatten(), torch.tensor([0.5, 0.5]))
