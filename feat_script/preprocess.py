"""Frame preprocessing, with the originals' exact arithmetic.

The originals resize PIL images with torchvision (bilinear, PIL's antialiasing) and normalise
with ``ToTensor`` + ``Normalize`` in float32; these helpers do the same operations on uint8
arrays so features match the originals' preprocessing of the same frames. The extractors resize
in the workers and send uint8 pixels (a quarter of the bytes of float32); ``pixels_to_input``
normalises them on the device with the same float32 operations as ``normalise``, so the network
input is bit for bit the same.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def resize_frames(frames: np.ndarray, width: int, height: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """``Resize([height, width])`` on each frame (PIL bilinear, or ``resample``); uint8 ``[T, height, width, 3]``."""
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), resample)) for f in frames])


def resize_short_centre_crop(frames: np.ndarray, short: int = 256, crop: int = 224,
                             resample: int = Image.BILINEAR) -> np.ndarray:
    """``Resize(short)`` then ``CenterCrop(crop)`` as torchvision does them on PIL images (bilinear, or
    ``resample``: CLIP's and timm's transforms are bicubic)."""
    h, w = frames.shape[1:3]
    if h <= w:
        new_h, new_w = short, int(short * w / h)
    else:
        new_h, new_w = int(short * h / w), short
    resized = resize_frames(frames, new_w, new_h, resample) if (new_h, new_w) != (h, w) else frames
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    if top < 0 or left < 0:
        raise ValueError(f"centre crop {crop} larger than the resized frame {new_w}x{new_h}")
    return resized[:, top : top + crop, left : left + crop]


def to_tensor_normalize(frames: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``ToTensor`` + ``Normalize``: uint8 ``[T, H, W, 3]`` -> float32 ``[T, 3, H, W]``."""
    x = frames.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    m = np.asarray(mean, np.float32)[None, :, None, None]
    s = np.asarray(std, np.float32)[None, :, None, None]
    return np.ascontiguousarray((x - m) / s)


def pixels_to_input(pixels: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``normalise`` on the device: uint8 ``[N, ..., 3]`` -> float32 ``[N, 3, ...]`` (a channels-last
    view: ``[N, H, W, 3]`` gives ``[N, 3, H, W]`` in channels_last memory, ``[N, L, H, W, 3]`` gives
    ``[N, 3, L, H, W]`` in channels_last_3d). Divisions by device tensors, not Python scalars: CUDA
    turns a scalar division into a multiplication by the reciprocal, which rounds differently."""
    x = pixels.movedim(-1, 1).float()
    shape = (1, 3) + (1,) * (x.dim() - 2)
    stats = torch.tensor([[255.0] * 3, mean, std], dtype=torch.float32).to(x.device, non_blocking=True)
    scale, m, s = (row.reshape(shape) for row in stats)
    return (x / scale - m) / s


def jpeg_roundtrip(frames: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode each frame as a PIL JPEG (``quality``), as the originals' frames went to disk
    (``imageio.imsave``: PIL, quality 75) and came back (``Image.open(...).convert("RGB")``)."""
    out = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            out.append(np.asarray(im.convert("RGB")))
    return np.stack(out)
