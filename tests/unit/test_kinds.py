"""Depth kinds: what each allows, and the disparity the audits and `show` read."""

import numpy as np
import pytest

from enrich.manifest.kinds import DepthKind, kind_of
from enrich.ops.audit import near_fraction, normalized_disparity


def test_each_kind_says_whether_it_is_metric_alignable_and_depth():
    assert [(k.metric, k.alignable, k.is_depth) for k in DepthKind] == [
        (False, True, False),  # relative disparity
        (False, True, True),  # relative depth
        (True, False, True),  # metric depth
    ]


def test_to_disparity_inverts_depth_and_keeps_disparity_and_nan():
    values = np.array([[0.5, 2.0], [np.nan, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(DepthKind.RELATIVE_DISPARITY.to_disparity(values), values)
    for kind in (DepthKind.RELATIVE_DEPTH, DepthKind.METRIC_DEPTH_M):
        d = kind.to_disparity(values)
        assert d[0, 0] == 2.0 and d[0, 1] == 0.5 and np.isnan(d[1, 0]) and np.isfinite(d[1, 1])


def test_a_near_object_reads_as_near_in_every_kind():
    depth = np.full((32, 32), 10.0, np.float32)
    depth[:, :24] = 1.0  # three quarters of the view is near
    assert near_fraction(depth, "relative_depth") == pytest.approx(0.75)
    assert near_fraction(1 / depth, "relative_disparity") == pytest.approx(0.75)
    assert near_fraction(depth, "metric_depth_m", metric_near_m=2.0) == pytest.approx(0.75)
    np.testing.assert_allclose(
        normalized_disparity(depth, "relative_depth"), normalized_disparity(1 / depth, "relative_disparity")
    )


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown depth_kind 'inverse'.*relative_disparity, relative_depth"):
        kind_of("inverse")
