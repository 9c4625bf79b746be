"""Bottom-up-attention TSV -> MASN's per-video object HDF5, on TSV shards written here."""
from __future__ import annotations

import base64

import h5py
import numpy as np
import pytest

from feat_script.convert_butd_tsv import TsvError, convert, main, read_keys
from feat_script.rekey_hdf5 import rekey


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=np.float32).tobytes()).decode("ascii")


def frame_line(image_id: str, width: int, height: int, boxes: np.ndarray, feats: np.ndarray) -> str:
    return "\t".join([image_id, str(width), str(height), str(len(boxes)), b64(boxes), b64(feats)]) + "\n"


def random_frame(rng, count, width=320, height=240):
    x1 = rng.uniform(0, width / 2, count)
    y1 = rng.uniform(0, height / 2, count)
    x2 = x1 + rng.uniform(1, width / 2, count)
    y2 = y1 + rng.uniform(1, height / 2, count)
    boxes = np.stack([x1, y1, x2, y2], 1)
    return boxes.astype(np.float32), rng.standard_normal((count, 2048)).astype(np.float32)


@pytest.fixture
def shards(tmp_path):
    """Two shards; gif_b is split across them; frames out of order; frame10 after frame2."""
    rng = np.random.default_rng(0)
    frames = {}
    plan = [("s0", "gif_a", "frame2", 12), ("s0", "gif_b", "frame1", 3), ("s0", "gif_a", "frame10", 10),
            ("s1", "gif_a", "frame1", 0), ("s1", "gif_b", "frame0", 5), ("s1", "gif_c", "f1", 4)]
    lines = {"s0": [], "s1": []}
    for shard, gif, frame, count in plan:
        boxes, feats = random_frame(rng, count)
        frames[(gif, frame)] = (boxes, feats)
        lines[shard].append(frame_line(f"{gif}/{frame}", 320, 240, boxes, feats))
    dup_boxes, dup_feats = random_frame(rng, 2)
    lines["s1"].append(frame_line("gif_a/frame2", 320, 240, dup_boxes, dup_feats))
    paths = []
    for shard, content in lines.items():
        path = tmp_path / f"tgifqa_1.tsv.{shard[1]}"
        path.write_text("".join(content))
        paths.append(path)
    return paths, frames


def expected_spatial(boxes, width=320.0, height=240.0):
    out = np.zeros((10, 6), dtype=np.float64)
    for i, (x1, y1, x2, y2) in enumerate(boxes[:10].astype(np.float64)):
        out[i] = [x1 / width, y1 / height, x2 / width, y2 / height, (x2 - x1) / width, (y2 - y1) / height]
    return out


def test_frames_are_grouped_sorted_truncated_and_padded(tmp_path, shards):
    paths, frames = shards
    out = tmp_path / "feats" / "tgif_btup_f_obj10.hdf5"
    stats = convert(paths, out)
    assert stats == {"videos": 3, "frames": 6, "skipped_gifs": 0}
    with h5py.File(out, "r") as f:
        assert set(f) == {"image_features", "spatial_features"}
        assert set(f["image_features"]) == {"gif_a", "gif_b", "gif_c"}
        image = f["image_features/gif_a"][()]
        spatial = f["spatial_features/gif_a"][()]
        assert image.shape == (3, 10, 2048) and spatial.shape == (3, 10, 6)
        assert image.dtype == np.float32 and spatial.dtype == np.float32
        for t, frame in enumerate(["frame1", "frame2", "frame10"]):
            boxes, feats = frames[("gif_a", frame)]
            n = min(len(boxes), 10)
            np.testing.assert_array_equal(image[t, :n], feats[:n])
            assert not image[t, n:].any()
            np.testing.assert_allclose(spatial[t], expected_spatial(boxes), rtol=0, atol=1e-6)
        gif_b = f["image_features/gif_b"][()]
        np.testing.assert_array_equal(gif_b[0, :5], frames[("gif_b", "frame0")][1])
        np.testing.assert_array_equal(gif_b[1, :3], frames[("gif_b", "frame1")][1])
    assert sorted(p.name for p in out.parent.iterdir()) == ["tgif_btup_f_obj10.hdf5"]


def test_keys_come_from_the_tgif_csvs(tmp_path, shards):
    paths, frames = shards
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "Test_count_question.csv").write_text(
        "gif_name\tquestion\tanswer\tvid_id\tkey\n"
        "gif_a\thow many ?\t3\tCOUNT1\t52\ngif_a\tagain ?\t2\tCOUNT2\t52\n")
    (csv_dir / "Test_frameqa_question.csv").write_text(
        "gif_name\tquestion\tanswer\ttype\tvid_id\tkey\tdescription\n"
        "gif_b\twhat ?\tdog\t0\tFRAMEQA1\t7\ta dog .\n")
    keys = read_keys(csv_dir)
    assert keys == {"gif_a": "52", "gif_b": "7"}
    out = tmp_path / "obj.hdf5"
    assert main([str(p) for p in paths] + ["--out", str(out), "--csv_dir", str(csv_dir)]) == 0
    with h5py.File(out, "r") as f:
        assert set(f["image_features"]) == set(f["spatial_features"]) == {"52", "7"}
        np.testing.assert_array_equal(f["image_features/7"][1, :3], frames[("gif_b", "frame1")][1])


@pytest.mark.parametrize("bad_line, message", [
    ("gif_x/f1\t320\t240\t1\tAAAA\n", "5 tab-separated fields"),
    ("gif_x/f1\t320\t240\t2\t{boxes}\t{feats}\n", "expected num_boxes \\* 4 = 8"),
    ("gif_x\t320\t240\t1\t{boxes}\t{feats}\n", "not <gif_name>/<frame_name>"),
    ("gif_x/f1\t320\t240\t1\t***\t{feats}\n", "not valid base64"),
])
def test_bad_lines_name_the_file_and_line_and_write_nothing(tmp_path, bad_line, message):
    boxes, feats = random_frame(np.random.default_rng(1), 1)
    good = frame_line("gif_x/f0", 320, 240, boxes, feats)
    path = tmp_path / "bad.tsv"
    path.write_text(good + bad_line.format(boxes=b64(boxes), feats=b64(feats)))
    out = tmp_path / "out" / "obj.hdf5"
    with pytest.raises(TsvError, match=f"bad.tsv:2: .*{message}"):
        convert([path], out)
    assert list(out.parent.iterdir()) == []


def test_missing_tsv_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.tsv"):
        convert([tmp_path / "missing.tsv"], tmp_path / "obj.hdf5")


def test_rekey_renames_gif_names_to_tgif_keys(tmp_path):
    path = tmp_path / "tgif_i3d_hw7_perclip_avgpool.hdf5"
    rows = {name: np.random.default_rng(i).random((3, 4), dtype=np.float32)
            for i, name in enumerate(["gif_a", "gif_b", "gif_z"])}
    with h5py.File(path, "w") as f:
        for name, value in rows.items():
            f[name] = value
            f[f"spatial_features/{name}"] = value[:, :2]
        f["52"] = rows["gif_a"]
    with pytest.raises(ValueError, match="two entries map to the key 52"):
        rekey(path, {"gif_a": "52", "gif_b": "7"})
    with h5py.File(path, "a") as f:
        del f["52"]
    stats = rekey(path, {"gif_a": "52", "gif_b": "7"})
    assert stats == {"renamed": 4, "kept": 0, "dropped": 2}
    with h5py.File(path, "r") as f:
        assert set(f) == {"52", "7", "spatial_features"} and set(f["spatial_features"]) == {"52", "7"}
        np.testing.assert_array_equal(f["7"][()], rows["gif_b"])
        np.testing.assert_array_equal(f["spatial_features/52"][()], rows["gif_a"][:, :2])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
