"""MASN's local features: 10 object boxes per frame and RoIAlign features, in the original layouts.

    F=data/tgif-qa/feats/feat_r6_vsync2
    # appearance local: boxes + RoIAlign on ResNet-152's C5 map
    python -m feat_script.extract_objects --stream appearance --videos data/tgif-qa/gifs \\
        --out $F/tgif_btup_f_obj10.hdf5 --weights checkpoints/resnet152-394f9c45.pth \\
        --detector-weights checkpoints/fasterrcnn_resnet50_fpn_coco-258fb6c6.pth
    # motion local: the same boxes, RoIAlign on I3D's 7x7 map
    python -m feat_script.extract_objects --stream motion --videos data/tgif-qa/gifs \\
        --out $F/tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5 \\
        --weights checkpoints/i3d_r50_kinetics.pth --boxes $F/tgif_btup_f_obj10.hdf5

Row t of every file is the centre frame of MASN segment t (``--num-clips`` T) and, for motion, the
I3D clip around it. ``--stream appearance`` writes groups ``image_features/<vid>`` (T, 10, 2048)
and ``spatial_features/<vid>`` (T, 10, 6); ``--stream motion`` writes dataset ``<vid>``
(T, 10, 2048). The motion stream takes its boxes from ``--boxes`` (any file with
``spatial_features``, e.g. one converted from bottom-up-attention TSVs by ``convert_butd_tsv``),
or runs the detector itself (same frames, same boxes). See ``feat_script.objects`` for the box
rule and the RoIAlign geometry.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torchvision
from torch import nn

from engine.cli import not_below, only_when, positive_int
from feat_script.base import ConfigError, Extractor, main, merge_id_maps
from feat_script.decode import DecodeError, count_frames, read_frames
from feat_script.extract_i3d import ClipConfig, add_clip_args, build_i3d, clip_sampling, load_clips
from feat_script.manifest import sha256_file
from feat_script.objects import box_counts, detect, faster_rcnn, roi_features
from feat_script.preprocess import pixels_to_input, resize_frames
from feat_script.recipes import IMAGENET_MEAN, IMAGENET_STD
from feat_script.sampling import masn_frame_indices
from feat_script.weights import WEIGHTS, build_loaded, resolve

RESNET_SIZE = 224


def c5_trunk(resnet: nn.Module) -> nn.Sequential:
    """A torchvision ResNet up to layer4 (C5: [2048, 7, 7] for 224x224), sharing ``resnet``'s modules."""
    return nn.Sequential(*list(resnet.children())[:-2]).eval()


def resnet152_c5(weights: Path | None) -> nn.Sequential:
    """torchvision ResNet-152's C5 trunk (``c5_trunk``) with ``weights``."""
    return c5_trunk(build_loaded(lambda: torchvision.models.resnet152(weights=None), weights, "resnet152"))


@dataclasses.dataclass
class ObjectsConfig(ClipConfig):
    stream: str = "appearance"  # appearance: ResNet-152 C5 (+ spatial features); motion: I3D 7x7 map
    detector_weights: Path | None = None
    # motion: the boxes instead of detecting: an HDF5 file with spatial_features/<vid>, or in memory
    # {video id: [T, 10, 6] spatial features}
    boxes: Path | Mapping[str, np.ndarray] | None = None
    det_min_size: int = 800
    det_max_size: int = 1333
    det_batch_size: int = 1
    roi_size: int = 7
    id_map: list[Path] | None = None  # name -> id files: how --boxes entries are keyed


class ObjectsExtractor(Extractor):
    Config = ObjectsConfig
    name = "objects"
    description = __doc__
    default_store = "hdf5"
    default_batch_size = 8
    # appearance: a C5 trunk already built with the same weights (``c5_trunk`` of the ResNet-152 that
    # MASN's global stream runs), used instead of building another; None builds one
    shared_backbone: nn.Module | None = None

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--stream", choices=["appearance", "motion"], required=True,
                            help="appearance: ResNet-152 C5 (+ spatial features); motion: I3D 7x7 map")
        parser.add_argument("--detector-weights", type=Path, default=None,
                            help=f"Faster R-CNN weights ({WEIGHTS['fasterrcnn'].files[0]} from torchvision)")
        parser.add_argument("--boxes", type=Path, default=None,
                            help="motion: read boxes from this file's spatial_features instead of detecting")
        parser.add_argument("--det-min-size", type=positive_int, default=800, help="detector input: shorter side")
        parser.add_argument("--det-max-size", type=positive_int, default=1333, help="detector input: longer side cap")
        parser.add_argument("--det-batch-size", type=positive_int, default=1,
                            help="frames per detector forward (about 0.5 GB each on CPU at 800 pixels)")
        parser.add_argument("--roi-size", type=positive_int, default=7, help="RoIAlign bins per side (then averaged)")
        only_when(parser, ["--boxes"], lambda args: args.stream == "motion", "with --stream appearance")
        only_when(parser, ["--detector-weights", "--det-min-size", "--det-max-size", "--det-batch-size"],
                  lambda args: args.boxes is None, "with --boxes (the boxes are read, not detected)")
        add_clip_args(parser)
        not_below(parser, "--det-min-size", "--det-max-size", "the shorter side could never reach --det-min-size")

    def __init__(self, config: ObjectsConfig | None = None) -> None:
        super().__init__(config)
        args = self.config
        if args.det_batch_size < 1:
            raise ConfigError("--det-batch-size must be >= 1")
        if args.boxes is not None and args.stream != "motion":
            raise ConfigError("--boxes is for --stream motion (appearance detects the boxes it writes)")
        if isinstance(args.boxes, Path) and not args.boxes.is_file():
            raise ConfigError(f"--boxes {args.boxes}: no such file (HDF5 with spatial_features/<video_id>)")
        self.outputs = ("image_features", "spatial_features") if args.stream == "appearance" else ("",)
        self.detector_path: Path | None = None
        self.id_map = merge_id_maps(args.id_map or [])

    def sampling(self) -> dict[str, Any]:
        recipe = clip_sampling(self.config)
        recipe.update(stream=self.config.stream, frame="centre frame of each segment", objects=10,
                      boxes=str(self.config.boxes) if self.config.boxes else "faster_rcnn top-10 by score",
                      detector_input=f"min {self.config.det_min_size}, max {self.config.det_max_size}",
                      roi_align=f"{self.config.roi_size}x{self.config.roi_size}, aligned, averaged",
                      resnet_input=f"{RESNET_SIZE}x{RESNET_SIZE} (no crop), ImageNet normalisation")
        return recipe

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.config.stream == "appearance":
            return {"image_features": (10, 2048), "spatial_features": (10, 6)}
        return {"": (10, 2048)}

    def model_info(self) -> dict[str, Any]:
        backbone = "resnet152 layer4" if self.config.stream == "appearance" else "i3d_r50 layer4, mean over T'"
        if self.config.boxes is not None:
            stat = self.config.boxes.stat()
            return {"backbone": backbone, "boxes": {"path": str(self.config.boxes), "bytes": stat.st_size,
                                                    "mtime": stat.st_mtime}}
        weights = "random-init" if self.detector_path is None else {
            "path": str(self.detector_path), "sha256": sha256_file(self.detector_path)}
        return {"backbone": backbone, "detector": {"arch": "fasterrcnn_resnet50_fpn (COCO)", "weights": weights}}

    def optimise(self, model: nn.Module) -> nn.Module:
        """The base's speed-ups (BatchNorm folding, channels_last) for the backbone only."""
        model["backbone"] = super().optimise(model["backbone"])
        return model

    def _stored_boxes(self, video: Path) -> np.ndarray:
        vid = self.id_map.get(video.stem, video.stem)
        if isinstance(self.config.boxes, Mapping):
            if vid not in self.config.boxes:
                raise DecodeError(f"{video}: no boxes given for {vid!r}")
            spatial = np.asarray(self.config.boxes[vid])
        else:
            with h5py.File(self.config.boxes, "r") as f:
                key = f"spatial_features/{vid}"
                if key not in f:
                    raise DecodeError(f"{video}: no {key} in {self.config.boxes}")
                spatial = f[key][()]
        if spatial.shape != (self.config.num_clips, 10, 6):
            raise DecodeError(f"{video}: {self.config.boxes}:spatial_features/{vid} has shape {spatial.shape}, "
                              f"expected ({self.config.num_clips}, 10, 6) (same --num-clips)")
        return spatial.astype(np.float32)

    def load(self, video: Path) -> dict[str, np.ndarray]:
        num_frames = count_frames(video)
        item: dict[str, np.ndarray] = {}
        if self.config.boxes is None:
            item["frames"] = read_frames(video, indices=masn_frame_indices(num_frames, self.config.num_clips))
        else:
            item["spatial"] = self._stored_boxes(video)
        if self.config.stream == "appearance":  # uint8; ImageNet mean/std on the device (compute)
            item["input"] = resize_frames(item["frames"], RESNET_SIZE, RESNET_SIZE)
        else:
            item["input"] = load_clips(video, self.config, num_frames)
        return item

    def build_model(self) -> nn.Module:
        args = self.config
        if args.stream == "appearance":
            self.weights_path = self.resolve_weights("resnet152")
            backbone = self.shared_backbone if self.shared_backbone is not None else resnet152_c5(self.weights_path)
        else:
            backbone, self.weights_path = build_i3d(args)
        modules = {"backbone": backbone}
        if args.boxes is None:
            self.detector_path = resolve("fasterrcnn", args.detector_weights, args.random_init,
                                         "--detector-weights")
            modules["detector"] = faster_rcnn(self.detector_path, args.det_min_size, args.det_max_size)
        return nn.ModuleDict(modules)

    def compute(self, model: nn.Module, item: dict[str, torch.Tensor],
                device: torch.device) -> dict[str, np.ndarray]:
        spatial, counts = self.boxes(model, item, device)
        local = self.pool(self.maps(model, item["input"], device), spatial, counts)
        if self.config.stream == "appearance":
            return {"image_features": local, "spatial_features": spatial}
        return {"": local}

    def boxes(self, model: nn.Module, item: dict[str, torch.Tensor],
              device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """The spatial features [T, 10, 6] and box counts [T]: detected, or the stored ``--boxes``."""
        if "spatial" in item:
            spatial = item["spatial"].numpy()
            return spatial, box_counts(spatial)
        with self.autocast(device):
            return detect(model["detector"], item["frames"], self.config.det_batch_size)

    def maps(self, model: nn.Module, rows: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The backbone's maps of the network inputs, ``--batch-size`` rows at a time (they need no boxes,
        so they may run while the detector works)."""
        rows = rows.to(device, non_blocking=True)
        maps = []
        for start in range(0, len(rows), self.config.batch_size):
            chunk = rows[start:start + self.config.batch_size]
            if self.config.stream == "appearance":
                chunk = pixels_to_input(chunk, IMAGENET_MEAN, IMAGENET_STD)
            with self.autocast(device):
                maps.append(model["backbone"](self.inputs(chunk)).float())
        return torch.cat(maps)

    def pool(self, maps: torch.Tensor, spatial: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """RoIAlign of ``maps`` in the boxes (``roi_features``), as a [T, 10, C] array."""
        device = maps.device
        return roi_features(maps, torch.from_numpy(spatial[..., :4]).to(device), torch.from_numpy(counts).to(device),
                            self.config.roi_size).cpu().numpy()


if __name__ == "__main__":
    raise SystemExit(main(ObjectsExtractor))
