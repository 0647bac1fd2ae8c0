"""The depth loop a user would otherwise write: decord, transformers' depth pipeline one frame at a
time, a min-max 16-bit PNG per frame, one pandas Parquet file. `benchmarks/throughput.py` times it
as a whole command, as it times `enrich run`.

    python benchmarks/naive_depth.py MODEL_DIR OUT_DIR FPS MAX_FRAMES CLIP [CLIP ...]

Prints the number of frames written.
"""

import io
import os
import sys

import decord
import numpy as np
import pandas as pd
import torch
from PIL import Image
from transformers import pipeline


def main(model_dir: str, out: str, fps: float, max_frames: int, clips: list[str]) -> None:
    pipe = pipeline("depth-estimation", model=model_dir, device=0 if torch.cuda.is_available() else -1)
    rows = []
    for clip in clips:
        reader = decord.VideoReader(clip)
        step = max(1, round(reader.get_avg_fps() / fps))
        for index in list(range(0, len(reader), step))[:max_frames]:
            frame = reader[index].asnumpy()
            depth = pipe(Image.fromarray(frame))["predicted_depth"].numpy()
            lo, hi = float(depth.min()), float(depth.max())
            codes = ((depth - lo) / max(hi - lo, 1e-12) * 65535).round().astype(np.uint16)
            buffer = io.BytesIO()
            Image.fromarray(codes).save(buffer, format="PNG")
            rows.append({"clip": os.path.basename(clip), "frame_index": index, "depth_png": buffer.getvalue(),
                         "lo": lo, "hi": hi})  # fmt: skip
    pd.DataFrame(rows).to_parquet(os.path.join(out, "naive.parquet"))
    print(len(rows))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
