"""Object boxes per frame (torchvision Faster R-CNN) and RoIAlign local features, MASN's layouts.

MASN's released object features come from the Caffe bottom-up-attention detector; we cannot run
it here, so ``extract_objects.py`` detects with torchvision's Faster R-CNN and pools local features
with ``torchvision.ops.roi_align`` on two maps of the same frame/clip: ResNet-152's C5 map
(appearance local, [10, 2048]) and I3D's 7x7 layer4 map (motion local, [10, 2048]).

Boxes: the 10 highest-scoring detections of any class (score threshold 0, like bottom-up-attention
which always keeps at least 10), zero-padded when the detector returns fewer. Frames are resized
to the network's square input without cropping, so a box in normalised coordinates (the first four
spatial features) maps onto a feature map by scaling with the map's width and height.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.models.detection.faster_rcnn import FasterRCNN
from torchvision.ops import roi_align

from feat_script.boxes import OBJECTS_PER_FRAME, spatial_features
from feat_script.weights import WEIGHTS, build_loaded


def faster_rcnn(weights: str | Path | None = None, min_size: int = 800, max_size: int = 1333) -> FasterRCNN:
    """torchvision's Faster R-CNN ResNet-50 FPN (COCO) in eval mode; random init when ``weights`` is None."""
    def build() -> FasterRCNN:
        return fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, min_size=min_size,
                                       max_size=max_size, box_score_thresh=0.0,
                                       box_detections_per_img=OBJECTS_PER_FRAME)

    return build_loaded(build, weights, "fasterrcnn_resnet50_fpn", WEIGHTS["fasterrcnn"].source).eval()


@torch.no_grad()
def detect(model: FasterRCNN, frames: torch.Tensor, batch_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [T, H, W, 3] -> spatial features [T, 10, 6] (zero rows for padding) and box counts [T].

    The first four spatial features are the normalised box (x1/W, y1/H, x2/W, y2/H) that
    ``roi_features`` takes. ``batch_size`` frames per forward (default 1, as ``extract_objects``'s
    ``--det-batch-size``, so that ``answer.py`` and the CLI compute alike): at the detector's 800-pixel
    input one frame's activations take about 0.5 GB on CPU.
    """
    height, width = frames.shape[1:3]
    device = next(model.parameters()).device
    spatial = np.zeros((len(frames), OBJECTS_PER_FRAME, 6), dtype=np.float32)
    counts = np.zeros(len(frames), dtype=np.int64)
    pixels = frames.to(device, non_blocking=True)  # one copy, as uint8; converted batch by batch
    boxes = []
    for start in range(0, len(frames), batch_size):
        images = list(pixels[start:start + batch_size].permute(0, 3, 1, 2).to(torch.float32) / 255.0)
        boxes += [det["boxes"][:OBJECTS_PER_FRAME].float() for det in model(images)]
    if not boxes:
        return spatial, counts
    found = torch.cat(boxes).cpu().numpy()  # one copy back for all frames
    for t, rows in enumerate(np.split(found, np.cumsum([len(b) for b in boxes])[:-1])):
        counts[t] = len(rows)
        spatial[t, : len(rows)] = spatial_features(rows, width, height)
    return spatial, counts


def box_counts(spatial: np.ndarray) -> np.ndarray:
    """Boxes per frame of a stored [T, 10, 6] spatial feature: the rows that are not all zero."""
    return np.count_nonzero(np.abs(spatial).sum(axis=2) > 0, axis=1)


def roi_features(feature_map: torch.Tensor, boxes: torch.Tensor, counts: torch.Tensor,
                 output_size: int = 7) -> torch.Tensor:
    """RoIAlign + average: map [T, C, h, w], normalised boxes [T, 10, 4] -> [T, 10, C].

    Boxes are scaled to map coordinates (x by w, y by h) and pooled with ``aligned=True`` (pixel
    centres at +0.5) and adaptive sampling, then the ``output_size`` squared bins are averaged, so
    a box covering the whole frame gives exactly the map's global average. Padded boxes
    (index >= count) give zero rows.
    """
    t, c, h, w = feature_map.shape
    frame_index = torch.arange(t, device=boxes.device).repeat_interleave(OBJECTS_PER_FRAME)
    scaled = boxes.reshape(-1, 4) * boxes.new_tensor([w, h, w, h])
    rois = torch.cat([frame_index[:, None].to(boxes.dtype), scaled], dim=1).to(feature_map.dtype)
    pooled = roi_align(feature_map, rois, output_size=output_size, spatial_scale=1.0, aligned=True)
    local = pooled.mean(dim=(2, 3)).reshape(t, OBJECTS_PER_FRAME, c)
    valid = torch.arange(OBJECTS_PER_FRAME, device=counts.device)[None, :] < counts[:, None]
    return local * valid[..., None].to(local.dtype)
