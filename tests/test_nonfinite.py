"""Every guard against non-finite values catches all three kinds (NaN, +inf, -inf) and lets the
largest finite values through: the training loss, model selection, feature rows (AVST, MASN, the
row test both use) and GloVe vectors."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from engine_toy import Points, Regression, make_net

from avst.data.annotations import load_records
from avst.data.dataset import AVQADataset
from avst.data.features import FeatureError
from avst.data.vocab import Vocab
from engine.batching import nonfinite_rows
from engine.cli import add_engine_args
from engine.run import Run
from engine.sampling import EpochSampler
from engine.selection import improves, select_epoch
from engine.trainer import Trainer, TrainingDiverged
from masn.data.features import FeatureError as MasnFeatureError
from masn.data.glove import GloveError, read_glove_vectors
from tests.test_avst_data_errors import features, sources  # noqa: F401 - the fixture
from tests.test_masn_data_errors import count, load, replace  # noqa: F401 - the fixture

NONFINITE = [math.nan, math.inf, -math.inf]
KINDS = ["nan", "+inf", "-inf"]


class ScaledAt(Regression):
    """The toy regression whose loss is multiplied by ``factor`` at one call."""

    def __init__(self, at: int, factor: float) -> None:
        super().__init__(0, 0)
        self.at, self.factor = at, factor

    def training_loss(self, model, batch):
        loss, stats = super().training_loss(model, batch)
        return (loss * self.factor if self.calls == self.at else loss), stats


def _epoch(tmp_path, task: Regression) -> dict:
    args = add_engine_args(argparse.ArgumentParser()).parse_args(["--run-dir", str(tmp_path / "r"), "--quiet"])
    model = make_net(0.0)
    trainer = Trainer(Run(args, "r"), model, torch.optim.SGD(model.parameters(), lr=0.01), task,
                      device=torch.device("cpu"), epochs=1, batch_size=2)
    try:
        return trainer.train_epoch(Points(12, 1), EpochSampler(12, 2, shuffle=False, seed=1))
    finally:
        trainer.run.close()


@pytest.mark.parametrize("factor", NONFINITE, ids=KINDS)
def test_nonfinite_loss_of_every_kind_stops_training_naming_the_step(factor, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at epoch 1, step 3 \(global step 3\)"):
        _epoch(tmp_path, ScaledAt(3, factor))


@pytest.mark.parametrize("factor", [-1.0, 10.0])
def test_a_finite_loss_however_odd_does_not_stop_training(factor, tmp_path):
    assert math.isfinite(_epoch(tmp_path, ScaledAt(3, factor))["loss"])


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("value", NONFINITE, ids=KINDS)
def test_selection_never_picks_a_nonfinite_value(value, mode):
    assert not improves(value, None, mode) and not improves(value, 0.5, mode)
    history = [{"epoch": 1, "val": {"acc": 0.5}}, {"epoch": 2, "val": {"acc": value}}]
    assert select_epoch(history, "val", "acc", mode)["epoch"] == 1
    assert select_epoch(history[1:], "val", "acc", mode) is None


@pytest.mark.parametrize("mode, better, worse", [("max", 0.5000001, 0.4999999), ("min", 0.4999999, 0.5000001)])
def test_selection_boundary_ties_go_to_the_later_epoch(mode, better, worse):
    assert improves(0.5, 0.5, mode) and improves(better, 0.5, mode) and not improves(worse, 0.5, mode)
    assert improves(np.finfo(np.float64).max, 0.5, "max") and improves(-np.finfo(np.float64).max, 0.5, "min")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nonfinite_rows_finds_each_kind_in_any_column_and_passes_the_extremes(dtype):
    info = np.finfo(dtype)
    finite = [info.max, -info.max, info.tiny, -info.tiny, info.smallest_subnormal, -0.0, 0.0]
    rows = np.zeros((len(finite) + 4 * 3, 5), dtype)
    for i, value in enumerate(finite):
        rows[i, i % 5] = value
    bad = []
    for j, value in enumerate([math.nan, -math.nan, math.inf, -math.inf]):
        for col in (0, 2, 4):
            r = len(finite) + 3 * j + col // 2
            rows[r, col] = value
            bad.append(r)
    want = np.zeros(len(rows), bool)
    want[bad] = True
    np.testing.assert_array_equal(nonfinite_rows(rows), want)


@pytest.mark.parametrize("value", NONFINITE, ids=KINDS)
def test_avst_features_of_every_nonfinite_kind_are_refused(value, features):  # noqa: F811 - the fixture
    root, train = features
    audio = np.load(root / "audio" / "v1.npy")
    audio[12, 127] = value  # a row item 0 reads, its last column
    np.save(root / "audio" / "v1.npy", audio)
    ds = AVQADataset(load_records(train), Vocab.build(train), *sources(root).values(), seed=3)
    with pytest.raises(FeatureError, match=r"v1\.npy: the audio features of video 'v1' hold NaN or inf"):
        ds[0]


def test_avst_features_at_the_float32_extremes_are_read(features):  # noqa: F811 - the fixture
    root, train = features
    audio = np.load(root / "audio" / "v1.npy")
    audio[12, 127], audio[0, 0] = np.finfo(np.float32).max, -np.finfo(np.float32).max
    np.save(root / "audio" / "v1.npy", audio)
    ds = AVQADataset(load_records(train), Vocab.build(train), *sources(root).values(), seed=3)
    assert ds[0] is not None


@pytest.mark.parametrize("value", NONFINITE, ids=KINDS)
def test_masn_features_of_every_nonfinite_kind_are_refused(value, count):  # noqa: F811 - the fixture
    root, d = count
    bad = np.ones((3, 10, 2048), np.float32)
    bad[2, 9, 2047] = value  # the last entry
    replace(d / "tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5", "112", bad)
    with pytest.raises(MasnFeatureError, match=r"obj10\.hdf5: video '112' \(i3d_roi\) holds NaN or inf"):
        load(root).splits["test"][2]


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "-Infinity", "1e999"])
def test_glove_vectors_of_every_nonfinite_kind_are_refused(text, tmp_path):
    glove = tmp_path / "g.txt"
    glove.write_text("cat " + " ".join(["0.1"] * 299 + [text]) + "\n")
    with pytest.raises(GloveError, match=r"g\.txt: line 1: the vector of 'cat' holds NaN or inf"):
        read_glove_vectors(glove, {"cat"})


def test_glove_vectors_at_the_float64_extremes_are_read(tmp_path):
    glove = tmp_path / "g.txt"
    glove.write_text("cat " + " ".join(["1.7976931348623157e308", "-1.7976931348623157e308"] + ["0"] * 298) + "\n")
    assert read_glove_vectors(glove, {"cat"})["cat"][0] == np.finfo(np.float64).max
