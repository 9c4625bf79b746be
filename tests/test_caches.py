"""Caches go to the user's cache folder (``$XDG_CACHE_HOME/avqa-repro``), never into a data folder, and
two inputs never share one cache file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.files import cache_home
from masn.data.build import load_tgif
from masn.data.glove import load_embedding
from masn.data.text import Vocabulary
from tests.test_masn_data import count_rows, quiet, write_features, write_glove, write_tgif


def snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("xdg", "want"), [("/x/cache", "/x/cache/avqa-repro"), ("", "~/.cache/avqa-repro"),
                                           ("relative/cache", "~/.cache/avqa-repro"), (None, "~/.cache/avqa-repro")])
def test_cache_home_honours_xdg_cache_home(xdg, want, monkeypatch):
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)  # relative or empty: ignored, as the XDG spec says
    assert cache_home() == Path(want).expanduser()


def test_tgif_glove_cache_leaves_the_vocabulary_folder_untouched(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    write_tgif(tmp_path / "q", "Count", count_rows(10), count_rows(4, 10))
    write_features(tmp_path / "f", {100 + i: 3 + i % 3 for i in range(14)})
    write_glove(tmp_path / "v" / "glove.42B.300d.txt", ["how", "many", "times", "jump"])
    before = snapshot(tmp_path / "v")
    first = load_tgif("Count", tmp_path / "q", tmp_path / "f", tmp_path / "v", log=quiet)
    assert snapshot(tmp_path / "v") == before
    cached = sorted(p.name for p in (tmp_path / "xdg" / "avqa-repro" / "glove").iterdir())
    assert [Path(n).suffix for n in cached] == [".json", ".npz"] and cached[0].startswith("vocab_embedding_Count-")
    (tmp_path / "v" / "glove.42B.300d.txt").unlink()  # served from the cache now
    again = load_tgif("Count", tmp_path / "q", tmp_path / "f", tmp_path / "v", log=quiet)
    np.testing.assert_array_equal(first.word_matrix, again.word_matrix)


def test_one_stem_two_glove_files_or_vocabularies_get_two_cache_files(tmp_path):
    for folder, words in (("a", ["cat"]), ("b", ["cat"])):
        write_glove(tmp_path / folder / "glove.txt", words, seed=len(folder) + ord(folder))
    cache = tmp_path / "cache"
    a = load_embedding(Vocabulary(["cat"]), tmp_path / "a" / "glove.txt", "same", log=quiet, cache_dir=cache)
    b = load_embedding(Vocabulary(["cat"]), tmp_path / "b" / "glove.txt", "same", log=quiet, cache_dir=cache)
    assert not np.array_equal(a[2], b[2])  # each its own GloVe vector, not the other's cached one
    c = load_embedding(Vocabulary(["cat", "dog"]), tmp_path / "a" / "glove.txt", "same", log=quiet, cache_dir=cache)
    np.testing.assert_array_equal(c[2], a[2])
    assert len(list(cache.glob("same-*.npz"))) == 3
    for path, vocab in (("a", ["cat"]), ("b", ["cat"])):  # still served, each from its own file
        (tmp_path / path / "glove.txt").unlink()
        got = load_embedding(Vocabulary(vocab), tmp_path / path / "glove.txt", "same", log=quiet, cache_dir=cache)
        np.testing.assert_array_equal(got, a if path == "a" else b)
