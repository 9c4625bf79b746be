"""Synthetic MUSIC-AVQA data for the demo and the tests, in exactly the original file formats.

Each video has 1-3 instruments from a small pool, each at a screen position (left, middle, right) and
with a loudness. The audio features carry which instruments sound and how loud (a fixed non-negative
direction per instrument, scaled); the 14x14 maps carry which instrument sits where (a block of
channels per instrument, lit in that position's columns). Question types whose answer lives in these
features can be learned; "Is there a voiceover?" and the temporal questions get random answers and
should stay at chance. Visual maps are stored as float16 ``.npy`` to keep the demo small (the readers
cast to float32); the shapes are the real ones.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from avst.data.annotations import load_records, make_record
from avst.data.features import AUDIO_SHAPE, ROWS, VISUAL_SHAPE
from avst.data.vocab import Vocab

INSTRUMENTS = ("piano", "violin", "flute", "cello", "guzheng", "acoustic_guitar")
POSITIONS = ("left", "middle", "right")
NUMBERS = ("zero", "one", "two", "three")
COLUMNS = {"left": slice(0, 4), "middle": slice(5, 9), "right": slice(10, 14)}
COLOURS = ((230, 40, 40), (40, 200, 40), (40, 60, 230), (230, 200, 30), (200, 40, 220), (30, 210, 220))


def _questions(video: str, scene: dict, rng: np.random.Generator) -> list[tuple]:
    """(modality, type, template, fillers, answer) for one video."""
    present = list(scene)
    absent = [i for i in INSTRUMENTS if i not in scene]
    by_pos = sorted(present, key=lambda i: POSITIONS.index(scene[i]["pos"]))
    yn = ("yes", "no")
    qs = []
    for obj in (rng.choice(present), rng.choice(absent)):
        qs.append(("Audio", "Counting", "Is there a <Object> sound?", [obj], yn[obj not in scene]))
        qs.append(("Visual", "Counting", "Is there a <Object> in the entire video?", [obj], yn[obj not in scene]))
    n = NUMBERS[len(present)]
    qs.append(("Audio", "Counting", "How many musical instruments were heard throughout the video?", [], n))
    qs.append(("Visual", "Counting", "How many types of musical instruments appeared in the entire video?",
               [], n))
    qs.append(("Audio-Visual", "Counting", "How many instruments are sounding in the video?", [], n))
    qs.append(("Visual", "Location", "What kind of instrument is the <LRer> instrument? ", ["leftest"], by_pos[0]))
    qs.append(("Visual", "Location", "What kind of instrument is the <LRer> instrument? ", ["rightest"],
               by_pos[-1]))
    if len(present) >= 2:
        a, b = rng.permutation(present)[:2]
        louder = yn[scene[a]["loud"] <= scene[b]["loud"]]
        qs.append(("Audio", "Comparative", "Is the <Object> louder than the <Object>?", [a, b], louder))
        loudest = max(present, key=lambda i: scene[i]["loud"])
        qs.append(("Audio-Visual", "Location", "Where is the <LL> instrument?", ["loudest"], scene[loudest]["pos"]))
        pa, pb = scene[a]["pos"], scene[b]["pos"]
        qs.append(("Audio-Visual", "Comparative", "Is the instrument on the <LR> louder than the instrument on "
                   "the <LR>?", [pa, pb], louder))
    qs.append(("Audio-Visual", "Existential", "Is there a voiceover?", [], yn[int(rng.integers(2))]))
    qs.append(("Audio-Visual", "Temporal", "Where is the <FL> sounding instrument?", [str(rng.choice(["first",
               "last"]))], scene[by_pos[int(rng.integers(len(by_pos)))]]["pos"]))
    return qs


def _features(scene: dict, rng: np.random.Generator, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    audio = 0.1 * rng.random((ROWS, *AUDIO_SHAPE), dtype=np.float32)
    visual = 0.05 * rng.random((ROWS, *VISUAL_SHAPE), dtype=np.float32)
    block = VISUAL_SHAPE[0] // len(INSTRUMENTS)
    for name, s in scene.items():
        i = INSTRUMENTS.index(name)
        audio += s["loud"] * directions[i]
        visual[:, i * block:(i + 1) * block, 4:10, COLUMNS[s["pos"]]] += 1.0
    return audio, visual.astype(np.float16)


def _frames(folder: Path, scene: dict, n: int = 10, size: int = 64) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    img = np.full((size, size, 3), 90, np.uint8)
    third = size // 3
    for name, s in scene.items():
        x0 = POSITIONS.index(s["pos"]) * third
        img[size // 4: 3 * size // 4, x0 + 2: x0 + third - 2] = COLOURS[INSTRUMENTS.index(name)]
    for k in range(n):
        Image.fromarray(img).save(folder / f"{k + 1:06d}.jpg", quality=90)


def make_dataset(out_dir: str | Path, seed: int = 0, n_videos: int = 24, n_frame_videos: int = 24,
                 rounds: int = 2) -> dict:
    """Write ``json/avqa-{train,val,test}.json``, ``feats/vggish``, ``feats/res18_14x14`` and ``frames``."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    directions = np.abs(rng.standard_normal((len(INSTRUMENTS), *AUDIO_SHAPE))).astype(np.float32)
    for sub in ("json", "feats/vggish", "feats/res18_14x14", "frames"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    records = []
    for v in range(n_videos):
        video = f"{v + 1:08d}"
        names = rng.choice(INSTRUMENTS, size=int(rng.integers(1, 4)), replace=False)
        places = rng.permutation(POSITIONS)[:len(names)]
        scene = {str(n): {"pos": str(p), "loud": float(rng.uniform(0.5, 2.0))} for n, p in zip(names, places)}
        audio, visual = _features(scene, rng, directions)
        np.save(out / "feats/vggish" / f"{video}.npy", audio)
        np.save(out / "feats/res18_14x14" / f"{video}.npy", visual)
        if v < n_frame_videos:
            _frames(out / "frames" / video, scene)
        for _ in range(rounds):
            records += [(video, q) for q in _questions(video, scene, rng)]
    order = rng.permutation(len(records))
    records = [make_record(video, qid + 1, *records[k][1]) for qid, k in enumerate(order) for video in
               [records[k][0]]]
    n_val = n_test = len(records) // 6
    splits = {"val": records[:n_val], "test": records[n_val:n_val + n_test], "train": records[n_val + n_test:]}
    _keep_vocab_closed(splits)
    for name, recs in splits.items():
        recs.sort(key=lambda r: r["question_id"])
        with open(out / "json" / f"avqa-{name}.json", "w", encoding="utf-8") as f:
            json.dump(recs, f, indent=1)
    return {name: len(recs) for name, recs in splits.items()} | {"videos": n_videos}


def _keep_vocab_closed(splits: dict[str, list[dict]]) -> None:
    """Move val/test questions whose words or answers never occur in train into train."""
    from avst.data.annotations import parse_record

    for name in ("val", "test"):
        vocab = Vocab.from_records([parse_record(r, "train") for r in splits["train"]])
        keep = []
        for raw in splits[name]:
            rec = parse_record(raw, name)
            if set(rec.tokens) <= set(vocab.words) and rec.answer in vocab.answers:
                keep.append(raw)
            else:
                splits["train"].append(raw)
        splits[name] = keep


def make_demo(out_dir: str | Path, seed: int = 0) -> str:
    """The demo's MUSIC-AVQA data set under ``out_dir``; returns a one-line summary."""
    sizes = make_dataset(out_dir, seed)
    load_records(Path(out_dir) / "json" / "avqa-test.json")
    return (f"music-avqa (synthetic): {sizes['videos']} videos, train/val/test {sizes['train']}/{sizes['val']}/"
            f"{sizes['test']} questions in {out_dir}")


def random_feature_files(work: Path, n_videos: int, seed: int = 0) -> Path:
    """Per-video ``audio/<vid>.npy`` [60,128] and ``visual/<vid>.npy`` [60,512,14,14] of uniform noise, and
    two questions per video in ``data/json/avqa-train.json`` (returned): the real sizes, for loader benches."""
    rng = np.random.default_rng(seed)
    for folder in ("audio", "visual", "data/json"):
        (work / folder).mkdir(parents=True, exist_ok=True)
    records = []
    for v in range(n_videos):
        vid = f"{v + 1:08d}"
        np.save(work / "audio" / f"{vid}.npy", rng.random((ROWS, *AUDIO_SHAPE), dtype=np.float32))
        np.save(work / "visual" / f"{vid}.npy", rng.random((ROWS, *VISUAL_SHAPE), dtype=np.float32))
        for k, obj in enumerate(("piano", "violin")):
            records.append(make_record(vid, 2 * v + k, "Audio", "Counting", "Is there a <Object> sound?", [obj],
                                       ("yes", "no")[k]))
    label = work / "data/json/avqa-train.json"
    label.write_text(json.dumps(records))
    return label
