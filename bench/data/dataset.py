"""In-memory training and evaluation datasets over preprocessed volumes, with the joint-model paper's augmentation.

Augmentation (joint-model paper §3.1.3): a flip along one randomly chosen axis and a random rotation, each with
probability 0.5. Decision: the paper gives no rotation range; we rotate up to ±15° about each axis
(``training.rotate_degrees``). Image and mask move together; the mask is rotated with
nearest-neighbour interpolation so it stays binary.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from bench.data.manifest import Case
from bench.data.preprocess import Volume, load_volume

__all__ = ["VolumeDataset", "load_volumes"]


def load_volumes(cache_dir: Path, cases: list[Case]) -> list[Volume]:
    return [load_volume(cache_dir, c.scan_id) for c in cases]


class VolumeDataset(Dataset):
    """Samples as dicts: image float [1, S, S, S], mask float [1, S, S, S], label long (-1 if unknown).

    Args:
        cases: the cases of this split, in order.
        volumes: their preprocessed volumes, same order.
        augment: apply flip + rotation (training only).
        flip_prob, rotate_prob, rotate_degrees: augmentation settings of the study.
        seed: seeds the augmentation's random state.
    """

    def __init__(self, cases: list[Case], volumes: list[Volume], *, augment: bool = False, flip_prob: float = 0.5,
                 rotate_prob: float = 0.5, rotate_degrees: float = 15.0, seed: int = 0) -> None:
        if len(cases) != len(volumes):
            raise ValueError(f"got {len(cases)} cases but {len(volumes)} volumes")
        self.cases = cases
        self.volumes = volumes
        self.transform = None
        if augment:
            from monai.transforms import Compose, RandAxisFlipd, RandRotated

            angle = math.radians(rotate_degrees)
            self.transform = Compose([
                RandAxisFlipd(keys=("image", "mask"), prob=flip_prob),
                RandRotated(keys=("image", "mask"), range_x=angle, range_y=angle, range_z=angle, prob=rotate_prob,
                            mode=("bilinear", "nearest"), padding_mode="zeros"),
            ])
            self.transform.set_random_state(seed=seed)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict:
        case, vol = self.cases[index], self.volumes[index]
        image = torch.from_numpy(vol.image)
        mask = torch.from_numpy(vol.mask.astype(np.float32)) if vol.mask is not None else torch.zeros_like(image)
        sample = {"image": image, "mask": mask}
        if self.transform is not None:
            sample = self.transform(sample)
            sample = {k: torch.as_tensor(v).float().contiguous() for k, v in sample.items()}
        sample["label"] = torch.tensor(-1 if case.label is None else case.label, dtype=torch.long)
        sample["index"] = torch.tensor(index, dtype=torch.long)
        return sample
