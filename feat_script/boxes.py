"""Per-frame object boxes in MASN's fixed-size layout: 10 boxes, zero padded, 6-d spatial feature."""
from __future__ import annotations

import re

import numpy as np

OBJECTS_PER_FRAME = 10


def spatial_features(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """[N, 4] (x1, y1, x2, y2) pixels -> [N, 6] float32 ``[x1/W, y1/H, x2/W, y2/H, w/W, h/H]``.

    Computed in the order of MASN's converter (from ban-vqa): x2/W is ``x1/W + (x2 - x1)/W``
    in float32, so the values match the released files to the last bit.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scaled_w = (boxes[:, 2] - boxes[:, 0]) / float(width)
    scaled_h = (boxes[:, 3] - boxes[:, 1]) / float(height)
    scaled_x = boxes[:, 0] / float(width)
    scaled_y = boxes[:, 1] / float(height)
    return np.stack([scaled_x, scaled_y, scaled_x + scaled_w, scaled_y + scaled_h, scaled_w, scaled_h],
                    axis=1).astype(np.float32)


def pad_rows(rows: np.ndarray, count: int = OBJECTS_PER_FRAME) -> np.ndarray:
    """Keep the first ``count`` rows and zero-pad to exactly ``count`` (float32)."""
    rows = np.asarray(rows, dtype=np.float32)[:count]
    out = np.zeros((count,) + rows.shape[1:], dtype=np.float32)
    out[: len(rows)] = rows
    return out


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
