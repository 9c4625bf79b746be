"""Small synthetic TGIF-QA data in exactly the real formats, with a signal only the video carries.

Writes ``question/`` (tab-separated Train/Test/Total CSVs of the four tasks), ``feat_r6_vsync2/``
(the four HDF5 files with the original names and layouts) and ``vocab/glove.42B.300d.txt`` (a tiny
GloVe-format file). Planted signals, each a direction in feature space plus noise:
Count = number of frames in which a "repetition" direction is on, the other frames carrying a "still"
direction (motion and appearance);
Action = the correct candidate's verb direction in the motion features;
Trans = the verb done after/before the one named in the question, in the later/earlier half;
FrameQA = the answer word's direction in the appearance features.
Questions are drawn so that text alone cannot beat chance.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from engine.files import atomic_path, atomic_write, atomic_write_text
from masn.data.features import LAYOUTS, OBJ_MAX
from masn.data.tgif import csv_path

FEAT_DIM, ACTIVE_DIM = 2048, 64
VERBS = ["jump", "wave", "spin", "clap", "nod", "kick", "run", "dance"]
SUBJECTS = ["man", "woman", "boy", "girl", "dog", "cat"]
FRAMEQA_ANSWERS = {  # type index (object, number, color, location) -> (question template, answers)
    0: ("what is the {s} holding ?", ["ball", "cup", "phone"]),
    1: ("how many {s}s are there ?", ["two", "three", "four"]),
    2: ("what color is the {s} 's shirt ?", ["red", "blue", "green"]),
    3: ("where is the {s} standing ?", ["street", "room", "beach"]),
}


def _split_counts(n_train: int, n_test: int) -> list[str]:
    return ["Train"] * n_train + ["Test"] * n_test


class _Videos:
    """Collects per-video arrays and writes the four HDF5 files (float32, gzip: data lie in 64 dims)."""

    def __init__(self, rng: np.random.RandomState, frames: int, noise: float, signal: float):
        self.rng, self.frames, self.noise, self.signal = rng, frames, noise, signal
        self.store: dict[str, dict[int, np.ndarray]] = {k: {} for k in ("res", "i3d", "res_obj", "box", "i3d_obj")}

    def direction(self) -> np.ndarray:
        v = np.zeros(FEAT_DIM, np.float32)
        v[:ACTIVE_DIM] = self.rng.randn(ACTIVE_DIM)
        return v / np.linalg.norm(v) * self.signal

    def _noise(self, *shape: int) -> np.ndarray:
        out = np.zeros((*shape, FEAT_DIM), np.float32)
        out[..., :ACTIVE_DIM] = self.rng.randn(*shape, ACTIVE_DIM) * self.noise
        return out

    def add(self, key: int, appearance: np.ndarray, motion: np.ndarray) -> None:
        """``appearance``/``motion``: (T, 2048) per-frame signal added to every object and the global."""
        t = len(appearance)
        self.store["res"][key] = appearance + self._noise(t)
        self.store["i3d"][key] = motion + self._noise(t)
        self.store["res_obj"][key] = appearance[:, None] + self._noise(t, OBJ_MAX)
        self.store["i3d_obj"][key] = motion[:, None] + self._noise(t, OBJ_MAX)
        xy = self.rng.uniform(0, 0.5, size=(t, OBJ_MAX, 2))
        wh = self.rng.uniform(0.1, 0.5, size=(t, OBJ_MAX, 2))
        self.store["box"][key] = np.concatenate([xy, xy + wh, wh], axis=-1).astype(np.float32)

    def write(self, feat_dir: Path) -> None:
        names = {role: names[0] for role, names in LAYOUTS["tgif-qa"].names.items()}
        feat_dir.mkdir(parents=True, exist_ok=True)
        opts = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
        plan = {"res_avg": [("", "res")], "i3d_avg": [("", "i3d")],
                "res_roi": [("image_features/", "res_obj"), ("spatial_features/", "box")],
                "i3d_roi": [("", "i3d_obj")]}
        for role, parts in plan.items():
            with atomic_path(feat_dir / names[role]) as tmp, h5py.File(tmp, "w") as f:
                for prefix, store in parts:
                    for key, arr in self.store[store].items():
                        f.create_dataset(f"{prefix}{key}", data=arr, **opts)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, sep="\t", index=False))


def make_demo(out_dir: Path, seed: int = 0, n_train: int = 192, n_test: int = 48, frames: int = 4,
              noise: float = 1.0, signal: float = 24.0) -> str:
    """Write the demo data set under ``out_dir``; returns a one-line summary."""
    out_dir = Path(out_dir)
    rng = np.random.RandomState(seed)
    videos = _Videos(rng, frames, noise, signal)
    zero = np.zeros((frames, FEAT_DIM), np.float32)
    verb_dir = {v: videos.direction() for v in VERBS}
    count_dir, still_dir = videos.direction(), videos.direction()
    answer_dir = {a: videos.direction() for _, answers in FRAMEQA_ANSWERS.values() for a in answers}
    splits = _split_counts(n_train, n_test)
    tables: dict[str, list[dict]] = {"Count": [], "Action": [], "Trans": [], "FrameQA": []}
    key = 0
    for i, split in enumerate(splits):
        subject = SUBJECTS[rng.randint(len(SUBJECTS))]
        # Count: frames where the repetition direction is on.
        key += 1
        count = int(rng.randint(1, frames + 1))
        on = np.zeros((frames, 1), np.float32)
        on[rng.choice(frames, count, replace=False)] = 1
        verb = VERBS[rng.randint(len(VERBS))]
        frames_signal = on * count_dir + (1 - on) * still_dir
        videos.add(key, frames_signal, frames_signal + verb_dir[verb])
        tables["Count"].append({"gif_name": f"tumblr_demo{key}", "question": f"How many times does the {subject} "
                                f"{verb} ?", "answer": 0 if count == 1 and i % 2 else count,
                                "vid_id": f"COUNT{i + 1}", "key": key, "split": split})
        # Action: the correct verb's direction in the motion features.
        key += 1
        options = list(rng.choice(VERBS, 5, replace=False))
        answer = int(rng.randint(5))
        videos.add(key, zero, np.repeat(verb_dir[options[answer]][None], frames, 0))
        tables["Action"].append({"gif_name": f"tumblr_demo{key}", "question": f"What does the {subject} do 3 times ?",
                                 **{f"a{k + 1}": options[k] for k in range(5)}, "answer": answer,
                                 "vid_id": f"ACTION{i + 1}", "key": key, "split": split})
        # Trans: two verbs in sequence; ask for the one after/before the named one.
        key += 1
        first, second, *others = list(rng.choice(VERBS, 6, replace=False))
        half = frames // 2
        motion = np.concatenate([np.repeat(verb_dir[first][None], half, 0),
                                 np.repeat(verb_dir[second][None], frames - half, 0)])
        videos.add(key, zero, motion)
        after = bool(rng.randint(2))
        named, target = (first, second) if after else (second, first)
        options = others[:4]
        answer = int(rng.randint(5))
        options.insert(answer, target)
        tables["Trans"].append({"gif_name": f"tumblr_demo{key}", "question": f"What does the {subject} do "
                                f"{'after' if after else 'before'} {named} ?",
                                **{f"a{k + 1}": options[k] for k in range(5)}, "answer": answer,
                                "vid_id": f"TRANS{i + 1}", "key": key, "split": split})
        # FrameQA: the answer's direction in the appearance features.
        key += 1
        qtype = int(rng.randint(4))
        template, answers = FRAMEQA_ANSWERS[qtype]
        word = answers[rng.randint(len(answers))]
        videos.add(key, np.repeat(answer_dir[word][None], frames, 0), zero)
        question = template.format(s=subject)
        tables["FrameQA"].append({"gif_name": f"tumblr_demo{key}", "question": question, "answer": word,
                                  "type": qtype, "vid_id": f"FRAMEQA{i + 1}", "key": key,
                                  "description": f"a {subject} in a video .", "split": split})
    question_dir = out_dir / "question"
    question_dir.mkdir(parents=True, exist_ok=True)
    for task, rows in tables.items():
        df = pd.DataFrame(rows)
        for split in ("Train", "Test"):
            _write_csv(df[df["split"] == split].drop(columns="split"), csv_path(question_dir, task, split))
        _write_csv(df.drop(columns="split"), csv_path(question_dir, task, "total"))
    videos.write(out_dir / "feat_r6_vsync2")
    words = sorted({w for rows in tables.values() for r in rows for c in ("question", "a1", "a2", "a3", "a4",
                    "a5", "answer", "description") if isinstance(r.get(c), str) for w in r[c].lower().split()})
    vocab_dir = out_dir / "vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    glove = vocab_dir / "glove.42B.300d.txt"
    lines = [w + " " + " ".join(f"{x:.4f}" for x in rng.randn(300) * 0.4) + "\n" for w in words]
    atomic_write_text(glove, "".join(lines))
    return (f"MASN demo data (synthetic TGIF-QA): {n_train} train / {n_test} test questions per task "
            f"(Count, Action, Trans, FrameQA), {key} videos x {frames} frames, in {out_dir}")
