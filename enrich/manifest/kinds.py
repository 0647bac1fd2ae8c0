"""What a stored depth map's values are (`depth_kind`), and what each kind allows.

Readers decode a map as `png * depth_scale + depth_offset` (png 0 = no value); the kind says what
the decoded values mean. The audits, temporal alignment, `show` and the report ask the kind, never
compare its string.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

NEAREST_M = 1e-3  # depths below this are treated as this, so that 1 / depth stays finite


class DepthKind(StrEnum):
    # Inverse depth known up to an unknown scale and shift (Depth Anything V1/V2 relative).
    RELATIVE_DISPARITY = "relative_disparity"
    # Depth known up to an unknown scale (Depth Anything 3's monocular models, relative).
    RELATIVE_DEPTH = "relative_depth"
    # Depth in metres (Depth Anything V2 metric, Depth Anything 3 metric).
    METRIC_DEPTH_M = "metric_depth_m"

    @property
    def metric(self) -> bool:
        return self is DepthKind.METRIC_DEPTH_M

    @property
    def alignable(self) -> bool:
        """Whether temporal alignment may rescale it: relative kinds only. Metric depth is absolute
        already, and aligning it would change its units. Alignment works in the kind's own space
        (an affine map of the values: `enrich.ops.temporal`)."""
        return not self.metric

    @property
    def is_depth(self) -> bool:
        """Larger is farther (depth), rather than larger is nearer (disparity)."""
        return self is not DepthKind.RELATIVE_DISPARITY

    def to_disparity(self, values: np.ndarray) -> np.ndarray:
        """A disparity-like map (larger = nearer) of decoded values, float32; NaN stays NaN."""
        d = np.asarray(values, dtype=np.float32)
        if self.is_depth:
            return 1.0 / np.maximum(d, NEAREST_M)
        return d


def kind_of(value: object) -> DepthKind:
    """A row's `depth_kind`; raises ValueError, naming the known kinds, for anything else."""
    try:
        return DepthKind(str(value))
    except ValueError:
        raise ValueError(f"unknown depth_kind {value!r} (known: {', '.join(k.value for k in DepthKind)})") from None
