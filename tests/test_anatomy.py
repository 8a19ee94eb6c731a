"""Anatomy from nilearn's ICBM152 templates: structure volumes in docs/data.md's bands, resampling, caching."""

import numpy as np
import pytest

from bench.data.anatomy import CST_POLYLINE, MNI_POINTS, load_anatomy


@pytest.fixture(scope="module")
def mm1():
    return load_anatomy()


def test_volumes_at_1mm(mm1):
    assert mm1.t1.shape == (197, 233, 189) and mm1.spacing == 1.0
    assert 1.8 < mm1.volume_ml("brain") / 1000 < 1.95
    assert 12 <= mm1.volume_ml("lateral_ventricles") <= 20
    assert 0.3 <= mm1.volume_ml("third_ventricle") <= 1.0
    assert 0.8 <= mm1.volume_ml("fourth_ventricle") <= 2.0
    assert mm1.volume_ml("corpus_callosum") > 5


def test_structures_sit_where_anatomy_says(mm1):
    x, y, z = mm1.coordinates()
    lateral = mm1.lateral_ventricles
    assert (np.abs(x[lateral]) > 0).all() and set(np.sign(x[lateral]).astype(int)) == {-1, 1}  # both hemispheres
    for name, point in MNI_POINTS.items():
        i, j, k = np.round(mm1.mni_to_voxel(point)).astype(int)
        assert mm1.brain[i, j, k], name
    for point in CST_POLYLINE:
        i, j, k = np.round(mm1.mni_to_voxel(point)).astype(int)
        assert mm1.brain[i, j, k], point
    # distance maps are zero on their structure and grow away from it
    assert (mm1.dist_lateral[lateral] == 0).all() and mm1.dist_lateral[mm1.corpus_callosum].max() <= 12


def test_resampled_grid_preserves_volumes_and_coordinates(mm1):
    a64 = load_anatomy(64)
    assert a64.t1.shape == (64, 64, 64) and 2.5 < a64.spacing < 3.5
    assert a64.volume_ml("lateral_ventricles") == pytest.approx(mm1.volume_ml("lateral_ventricles"), rel=0.25)
    assert a64.volume_ml("brain") == pytest.approx(mm1.volume_ml("brain"), rel=0.05)
    # the deepest lateral-ventricle voxel at 1 mm is ventricle on the 64³ grid too (same MNI point)
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(mm1.lateral_ventricles)
    deepest = np.unravel_index(np.argmax(inside), inside.shape)
    i, j, k = np.round(a64.mni_to_voxel(np.asarray(deepest) + mm1.origin)).astype(int)
    assert inside.max() >= 3 and a64.lateral_ventricles[i, j, k]
    x, y, z = a64.coordinates()
    assert x[i, j, k] == pytest.approx(deepest[0] + mm1.origin[0], abs=a64.spacing)


def test_cached_copy_is_identical(mm1):
    again = load_anatomy()
    assert np.array_equal(again.lateral_ventricles, mm1.lateral_ventricles) and again.spacing == mm1.spacing
