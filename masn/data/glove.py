"""GloVe embedding matrix for a vocabulary, read once from the text file and cached in the user's
cache folder (``engine.files.cache_home``), not beside the GloVe file.

The matrix follows the original exactly: float64, every row first drawn from N(0, 1) by a
``RandomState(seed)`` (the original's global numpy state seeded with 999), then row ``i + 2`` set to
the GloVe vector of word ``i`` or, when absent, to a fresh N(0, 1) draw. Rows 0 (pad) and 1 (UNK)
stay random. The cache is ``<stem>-<digest>.npz`` (the matrix) + ``.json`` (the words and the GloVe
file's identity), the digest naming the GloVe file, vocabulary and seed, so that two datasets never
share one; it is reused only when both match, and no pickles are ever read.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from engine import dist
from engine.errors import UserError
from engine.files import atomic_write_bytes, cache_home
from masn.data.text import Vocabulary, vocab_sha256

GLOVE_DIM = 300


class GloveError(UserError, ValueError):
    """A GloVe file that is missing or malformed."""


def _glove_identity(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_glove_vectors(path: Path, wanted: set[str], dim: int = GLOVE_DIM) -> dict[str, np.ndarray]:
    """Vectors of the wanted words only (last occurrence wins, like the original's dict)."""
    if not path.is_file():
        raise GloveError(
            f"GloVe file not found: {path}. Download glove.42B.300d.zip from "
            "https://nlp.stanford.edu/projects/glove/, unzip it and pass --glove PATH "
            "(default <vc_dir>/glove.42B.300d.txt)."
        )
    wanted_b = {w.encode("utf-8"): w for w in wanted}
    found: dict[str, np.ndarray] = {}
    n_lines = 0
    with open(path, "rb") as f:
        for n_lines, line in enumerate(f, start=1):
            head = line.split(maxsplit=1)
            if not head:
                continue
            if n_lines == 1:
                n_values = len(line.split()) - 1
                if n_values != dim:
                    raise GloveError(f"{path}: line 1 has {n_values} values after the word, expected {dim}")
            word = wanted_b.get(head[0])
            if word is None:
                continue
            values = line.split()[1:]
            if len(values) != dim:
                raise GloveError(f"{path}: line {n_lines} ({head[0]!r}) has {len(values)} values, expected {dim}")
            try:
                vector = np.array([float(v) for v in values], dtype=np.float64)
            except ValueError as e:
                raise GloveError(f"{path}: line {n_lines} ({head[0]!r}) has a non-numeric value: {e}") from None
            if not np.isfinite(vector).all():
                raise GloveError(f"{path}: line {n_lines}: the vector of {word!r} holds NaN or inf; "
                                 "use an intact copy of the GloVe file")
            found[word] = vector
    if n_lines == 0:
        raise GloveError(f"{path}: the file is empty")
    return found


def build_matrix(vocab: Vocabulary, vectors: dict[str, np.ndarray], seed: int = 999) -> tuple[np.ndarray, int]:
    """The (len(vocab), 300) float64 matrix and the number of words without a GloVe vector."""
    rng = np.random.RandomState(seed)
    matrix = rng.normal(size=[len(vocab), GLOVE_DIM])
    missing = 0
    for i, w in enumerate(vocab.words):
        vec = vectors.get(w)
        if vec is None:
            missing += 1
            vec = rng.normal(size=GLOVE_DIM)
        matrix[i + 2] = vec
    return matrix, missing


def load_embedding(vocab: Vocabulary, glove_path: Path, cache_stem: str, seed: int = 999,
                   log=print, cache_dir: Path | None = None) -> np.ndarray:
    """The embedding matrix for ``vocab``, from ``<cache_dir>/<cache_stem>-<digest>.npz`` when it is
    current (``cache_dir`` default: ``<cache_home>/glove``).

    Under torchrun rank 0 checks or writes the cache first and the other ranks then read it, so the
    GloVe text is parsed once and the cache is written by one process."""
    folder = Path(cache_dir) if cache_dir is not None else cache_home() / "glove"
    if dist.rank() != 0:
        dist.barrier()
    try:
        return _cached_embedding(vocab, Path(glove_path), folder, cache_stem, seed, log)
    finally:
        if dist.rank() == 0:
            dist.barrier()


def cache_name(glove_path: Path, vocab: Vocabulary, cache_stem: str, seed: int) -> str:
    """``<cache_stem>-<digest>``: one name per GloVe file, vocabulary and seed."""
    what = json.dumps([str(Path(glove_path).resolve()), vocab_sha256(vocab.words), seed])
    return f"{cache_stem}-{hashlib.sha256(what.encode('utf-8')).hexdigest()[:16]}"


def _cached_embedding(vocab: Vocabulary, glove_path: Path, folder: Path, cache_stem: str, seed: int,
                      log) -> np.ndarray:
    name = cache_name(glove_path, vocab, cache_stem, seed)
    npz_path, json_path = folder / f"{name}.npz", folder / f"{name}.json"
    ident = _glove_identity(glove_path) if glove_path.is_file() else None
    key = {"glove": ident, "vocab_sha256": vocab_sha256(vocab.words), "seed": seed}
    if npz_path.is_file() and json_path.is_file():
        try:
            meta = json.loads(json_path.read_text())
            cached = meta["key"]
            same_vocab = cached["vocab_sha256"] == key["vocab_sha256"] and cached["seed"] == seed
            if same_vocab and (ident is None or cached["glove"] == ident):
                with np.load(npz_path, allow_pickle=False) as z:
                    matrix = z["matrix"]
                if matrix.shape == (len(vocab), GLOVE_DIM) and np.isfinite(matrix).all():
                    return matrix
        except (ValueError, KeyError, TypeError, OSError):
            pass
    vectors = read_glove_vectors(glove_path, set(vocab.words))
    matrix, missing = build_matrix(vocab, vectors, seed)
    log(f"GloVe: {len(vocab.words) - missing}/{len(vocab.words)} words found in {glove_path}; "
        f"cached as {npz_path}")
    if dist.rank() != 0:
        return matrix
    try:  # atomic_write_bytes makes the folder
        buf = io.BytesIO()
        np.savez(buf, matrix=matrix)
        atomic_write_bytes(npz_path, buf.getvalue())
        meta = {"key": key, "words": vocab.words, "missing": missing}
        atomic_write_bytes(json_path, json.dumps(meta).encode("utf-8"))
    except OSError as e:
        log(f"GloVe: could not write the cache in {folder} ({e}); continuing without it")
    return matrix
