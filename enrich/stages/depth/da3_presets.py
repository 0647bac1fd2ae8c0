"""The Depth Anything 3 presets enrich runs, and what their depth is: light (no torch), for the driver.

A DA3 checkpoint's `config.json` names its preset (`{"model_name": "da3-small"}`); the network is
`depth_anything_3/configs/PRESET.yaml` of the `depth-anything-3` package.
"""

from __future__ import annotations

import importlib.util

from enrich.manifest.kinds import DepthKind

# The any-view models (depth, confidence, camera). Not run yet: da3metric-large needs the camera's
# focal length for metres; the nested model is two networks; da3mono-large's forward pass sets sky
# pixels to a depth pooled over the whole batch (with an unseeded subsample), so a frame's depth
# would depend on its batch.
PRESETS = {
    "da3-small": DepthKind.RELATIVE_DEPTH,
    "da3-base": DepthKind.RELATIVE_DEPTH,
    "da3-large": DepthKind.RELATIVE_DEPTH,
    "da3-giant": DepthKind.RELATIVE_DEPTH,
}
INSTALL = "pip install --no-deps depth-anything-3==0.1.1, with enrich's [da3] extra (README: Depth Anything 3)"


def check_preset(config: dict) -> str:
    """The preset a DA3 `config.json` names, if enrich runs it and the package is installed;
    ValueError with one line otherwise."""
    name = config.get("model_name")
    if name not in PRESETS:
        raise ValueError(f"Depth Anything 3 preset {name!r} is not supported (supported: {', '.join(PRESETS)})")
    if importlib.util.find_spec("depth_anything_3") is None:
        raise ValueError(f"Depth Anything 3 needs the depth-anything-3 package: {INSTALL}")
    return name
