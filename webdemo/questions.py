"""The AVST question templates the page offers, and the drop-down values of their ``<...>`` slots.

MUSIC-AVQA asks 33 question templates; its annotation records fill the slots from the lists below
(``question_content`` and ``templ_values`` of the annotation JSON). A checkpoint can only answer in
the words of its vocabulary, so the page offers the templates whose fixed words it knows, and for each
slot the values it knows. A checkpoint trained on other words (the raw-video demo's colours) gets,
for a slot none of whose values it knows, its words that no template uses.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from avst.data.annotations import PAD, question_tokens

TEMPLATES = (
    "Is there a voiceover?",
    "How many sounding <Object> in the video？",
    "How many musical instruments were heard throughout the video?",
    "What is the <TH> instrument that comes in?",
    "How many <Object> are in the entire video?",
    "Is there a <Object> sound?",
    "Which is the musical instrument that sounds at the same time as the <Object>?",
    "What is the instrument on the <LR> of <Object>?",
    "Is the instrument on the <LR> louder than the instrument on the <LR>?",
    "Where is the performance?",
    "Is the <Object> louder than the <Object>?",
    "Are there <Object> and <Object> sound?",
    "How many types of musical instruments appeared in the entire video?",
    "Is the <Object> on the <LR> louder than the <Object> on the <LR>?",
    "Is the <Object> in the video always playing?",
    "What kind of instrument is the <LRer> instrument?",
    "How many instruments in the video did not sound from beginning to end?",
    "How many types of musical instruments sound in the video?",
    "What kind of musical instrument is it?",
    "How many instruments are sounding in the video?",
    "Are there <Object> and <Object> instruments in the video?",
    "Is this sound from the instrument in the video?",
    "Is there a <Object> in the entire video?",
    "Is the <FL> sound coming from the <LR> instrument?",
    "Is the instrument on the <LR> more rhythmic than the instrument on the <LR>?",
    "Is the <Object> on the <LR> more rhythmic than the <Object> on the <LR>?",
    "Where is the <LL> instrument?",
    "Where is the <FL> sounding instrument?",
    "Which <Object> makes the sound <FL>?",
    "Is the <Object> more rhythmic than the <Object>?",
    "Is the <Object> playing longer than the <Object>?",
    "Which instrument makes sounds <BA> the <Object>?",
    "What is the <LR> instrument of the <FL> sounding instrument?",
)
SLOT_VALUES = {
    "Object": ("accordion", "acoustic_guitar", "bagpipe", "banjo", "bassoon", "cello", "clarinet", "congas", "drum",
               "electric_bass", "erhu", "flute", "guzheng", "piano", "pipa", "saxophone", "suona", "trumpet", "tuba",
               "ukulele", "violin", "xylophone"),
    "LR": ("left", "middle", "right"),
    "LRer": ("leftest", "rightest"),
    "FL": ("first", "last"),
    "TH": ("first", "second", "third", "fourth", "fifth"),
    "LL": ("loudest", "lowest"),
    "BA": ("before", "after"),
}
_SLOT = re.compile(r"<(\w+)>")
_HOLE = "\0"


def slots(template: str) -> list[str]:
    """The slot kinds of ``template`` in order, e.g. ``["Object", "LR"]``."""
    return _SLOT.findall(template)


def fixed_words(template: str) -> list[str]:
    """The template's tokens (the original tokenizer's) that are not slots."""
    tokens = question_tokens(template, [_HOLE] * len(slots(template)), template)
    return [t for t in tokens if t != _HOLE]


def templates_for(vocab_words: Sequence[str]) -> list[dict]:
    """``[{"template", "slots": [{"kind", "values"}]}]`` for the templates a vocabulary can ask."""
    known = set(vocab_words) - {PAD}
    template_words = {w for t in TEMPLATES for w in fixed_words(t)}
    others = sorted(known - template_words - {v for values in SLOT_VALUES.values() for v in values})
    offered = []
    for template in TEMPLATES:
        if not set(fixed_words(template)) <= known:
            continue
        kinds = [{"kind": kind, "values": [v for v in SLOT_VALUES[kind] if v in known] or others}
                 for kind in slots(template)]
        if all(k["values"] for k in kinds):
            offered.append({"template": template, "slots": kinds})
    return offered
