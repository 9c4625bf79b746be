"""AVST models: ``AVST``, ``AVSTBaseline``, the question encoder and checkpoint loading."""

from avst.model.avst import AVST
from avst.model.baseline import AVSTBaseline
from avst.model.checkpoint import init_from_grounding, load_avst_state, normalize_state_keys, read_state
from avst.model.grounding import organize_match, spatial_grounding
from avst.model.question_encoder import QstEncoder

__all__ = [
    "AVST",
    "AVSTBaseline",
    "QstEncoder",
    "init_from_grounding",
    "load_avst_state",
    "normalize_state_keys",
    "organize_match",
    "read_state",
    "spatial_grounding",
]
