"""The papers' feature recipes as data: which extractors, with which settings, make each model's inputs.

Every constant of a recipe has its one definition here (normalisation statistics, AVST's JPEG
quality, rows and frame stride); the extractors' defaults, the answer paths (``avst/answer.py``,
``masn/answer.py``), the demos and the data loaders and checks read them from here. A ``Stream``
names a registered extractor (``feat_script.registry``) and the ``Config`` fields that differ from
its defaults; ``config(stream, ...)`` builds that ``Config``, ``build(stream, ...)`` the extractor.
This module imports no extractor until one is built, so loaders can read the constants cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet models
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)  # torchvision's video models; AVST's 14x14 and grounding inputs
KINETICS_STD = (0.22803, 0.22145, 0.216989)
JPEG_QUALITY = 75  # imageio's default: AVST's frames went to disk as these JPEGs and were read back
AVST_SECONDS = 60  # rows per video of AVST's features: fixed-60 frames, 60 one-second VGGish examples
FRAME_STRIDE = 6  # AVST's loaders take rows 0, 6, ..., 54 of the 60


@dataclass(frozen=True)
class Stream:
    """One input of a model: the registered extractor, its settings (``Config`` fields) and the
    file or folder name the model's loader reads it from."""

    extractor: str
    settings: dict[str, Any] = field(default_factory=dict)
    output: str = ""


@dataclass(frozen=True)
class Recipe:
    """A paper's features: its streams, and the rows of each that the model's loader samples
    (None: all of them)."""

    name: str
    streams: dict[str, Stream]
    rows: tuple[int, ...] | None = None


AVST = Recipe(
    "avst",
    {"audio": Stream("vggish", {"recipe": "avst", "num_secs": AVST_SECONDS}, "vggish"),
     "visual": Stream("14x14", {"sampling": "fixed60", "seconds": AVST_SECONDS, "jpeg_quality": JPEG_QUALITY},
                      "res18_14x14")},
    rows=tuple(range(0, AVST_SECONDS, FRAME_STRIDE)),
)
# MASN's HDF5 file names per data set (the first is the one written, then the names the authors'
# releases also use), as masn/data/features.py looks them up.
MASN_FILES = {
    "tgif-qa": {"res_avg": ("res152_avgpool.hdf5",),
                "i3d_avg": ("tgif_i3d_hw7_perclip_avgpool.hdf5",),
                "res_roi": ("tgif_btup_f_obj10.hdf5",),
                "i3d_roi": ("tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5",
                            "tgif_i3d_roialign_hw7_perclip_avgpool.hdf5")},
    "msvd-qa": {"res_avg": ("msvd_res152_avgpool.hdf5",),
                "i3d_avg": ("msvd_i3d_avgpool_perclip.hdf5",),
                "res_roi": ("msvd_btup_f_obj10.hdf5",),
                "i3d_roi": ("msvd_i3d_roialign_perclip_obj10.hdf5",)},
    "msrvtt-qa": {"res_avg": ("msrvtt_res152_avgpool.hdf5",),
                  "i3d_avg": ("msrvtt_i3d_avgpool_perclip.hdf5",),
                  "res_roi": ("msrvtt_btup_f_obj10.hdf5",),
                  "i3d_roi": ("msrvtt_i3d_roialign_perclip_obj10.hdf5",)},
}
# MASN: segment-centre frames and the clips around them, one row per segment (TGIF-QA's file names);
# the appearance-local file also holds the boxes (spatial_features) the motion-local stream pools with.
MASN = Recipe(
    "masn",
    {"res_avg": Stream("resnet", {"arch": "resnet152", "sampling": "masn"}, MASN_FILES["tgif-qa"]["res_avg"][0]),
     "res_roi": Stream("objects", {"stream": "appearance"}, MASN_FILES["tgif-qa"]["res_roi"][0]),
     "i3d_avg": Stream("i3d", {}, MASN_FILES["tgif-qa"]["i3d_avg"][0]),
     "i3d_roi": Stream("objects", {"stream": "motion"}, MASN_FILES["tgif-qa"]["i3d_roi"][0])},
)


def config(stream: Stream, **overrides: Any):
    """The ``Config`` of ``stream``'s extractor: its defaults, the recipe's settings, then ``overrides``."""
    from feat_script.registry import extractor_class

    return extractor_class(stream.extractor).Config(**{**stream.settings, **overrides})


def build(stream: Stream, **overrides: Any):
    """The extractor of ``stream``, ready for ``extract(video)``."""
    from feat_script.registry import extractor_class

    return extractor_class(stream.extractor)(config(stream, **overrides))


