"""Heat-map overlays of spatial attention, as the original visualiser draws them, in correct colours.

Steps (original ``grounding_gen/main_grd_gen_vis.py``): min-max normalise the 196 weights, reshape to 14x14,
resize bilinearly to the frame size, scale by 255 / max to uint8, colour with the JET map, blend 0.4 * heat +
0.6 * frame. The original passed an RGB frame to OpenCV, which treats it as BGR, so its frames came out with
red and blue swapped; here everything stays RGB. The JET table is OpenCV's (piecewise linear, written here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 224


def jet(values: np.ndarray) -> np.ndarray:
    """uint8 values -> uint8 RGB colours of the JET map (dark blue, blue, cyan, yellow, red, dark red)."""
    x = values.astype(np.float32) / 255.0
    r = np.clip(np.minimum(4 * x - 1.5, -4 * x + 4.5), 0, 1)
    g = np.clip(np.minimum(4 * x - 0.5, -4 * x + 3.5), 0, 1)
    b = np.clip(np.minimum(4 * x + 0.5, -4 * x + 2.5), 0, 1)
    return np.round(np.stack((r, g, b), axis=-1) * 255).astype(np.uint8)


def attention_image(weights: np.ndarray, size: int = SIZE) -> np.ndarray:
    """196 (or H*W square) attention weights -> uint8 [size, size] map scaled to 0..255."""
    w = np.asarray(weights, dtype=np.float32).reshape(-1)
    side = int(round(np.sqrt(w.size)))
    if side * side != w.size:
        raise ValueError(f"attention has {w.size} positions, not a square grid")
    w = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
    big = np.asarray(Image.fromarray(w.reshape(side, side)).resize((size, size), Image.BILINEAR))
    return (big / max(float(big.max()), 1e-12) * 255).astype(np.uint8)


def overlay(frame: np.ndarray | None, weights: np.ndarray, size: int = SIZE) -> np.ndarray:
    """RGB uint8 overlay of ``weights`` on ``frame`` (HxWx3 RGB, resized to size x size); a grey
    background when there is no frame (AVST works on features and may have none)."""
    heat = jet(attention_image(weights, size)).astype(np.float32)
    if frame is None:
        base = np.full((size, size, 3), 128, np.float32)
    else:
        base = np.asarray(Image.fromarray(np.asarray(frame, np.uint8)).convert("RGB").resize((size, size),
                                                                                            Image.BILINEAR))
    return np.clip(0.4 * heat + 0.6 * base.astype(np.float32), 0, 255).astype(np.uint8)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def frame_path(frames_dir: str | Path, video_id: str, index: int) -> Path | None:
    """The ``index``-th frame (sorted names) of ``frames_dir/<video_id>/``, or None when absent."""
    folder = Path(frames_dir) / video_id
    if not folder.is_dir():
        return None
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return names[min(index, len(names) - 1)] if names else None
