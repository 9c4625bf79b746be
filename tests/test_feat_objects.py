"""Object boxes, spatial features and RoIAlign local features (MASN's appearance/motion local)."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from feat_script.base import main
from feat_script.boxes import spatial_features
from feat_script.decode import DecodeError
from feat_script.extract_i3d import I3dExtractor
from feat_script.extract_objects import ObjectsConfig, ObjectsExtractor
from feat_script.extract_resnet import ResNetGlobal
from feat_script.manifest import read_failures, read_manifest
from feat_script.objects import box_counts, detect, faster_rcnn, roi_features
from feat_script.rekey_hdf5 import main as rekey_main
from feat_script.synthetic_video import make_gif, make_pattern_video


def test_spatial_feature_is_the_masn_six_vector():
    boxes = np.array([[10.0, 20.0, 110.0, 70.0], [0.0, 0.0, 320.0, 240.0]], dtype=np.float32)
    got = spatial_features(boxes, 320, 240)
    expected = np.array([[10 / 320, 20 / 240, 110 / 320, 70 / 240, 100 / 320, 50 / 240],
                         [0, 0, 1, 1, 1, 1]])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


def test_whole_frame_box_gives_the_global_average():
    torch.manual_seed(0)
    fmap = torch.randn(3, 16, 7, 7)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(3, 10, 1)
    local = roi_features(fmap, boxes, torch.full((3,), 10))
    assert local.shape == (3, 10, 16)
    torch.testing.assert_close(local, fmap.mean(dim=(2, 3))[:, None].expand(3, 10, 16), rtol=1e-5, atol=1e-5)


def test_box_average_of_a_linear_map_is_its_value_at_the_box_centre():
    h, w = 7, 9
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    cols = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
    fmap = torch.stack([cols, rows, 2 * cols - 3 * rows + 1])[None]
    boxes = torch.zeros(1, 10, 4)
    boxes[0, 0] = torch.tensor([0.2, 0.3, 0.5, 0.6])
    boxes[0, 1] = torch.tensor([0.4, 0.1, 0.9, 0.5])
    local = roi_features(fmap, boxes, torch.tensor([2]))
    for i in range(2):
        x1, y1, x2, y2 = boxes[0, i].tolist()
        cx = (x1 + x2) / 2 * w - 0.5
        cy = (y1 + y2) / 2 * h - 0.5
        expected = torch.tensor([cx, cy, 2 * cx - 3 * cy + 1])
        torch.testing.assert_close(local[0, i], expected, rtol=0, atol=1e-4)
    assert not local[0, 2:].any()


def test_padded_boxes_give_zero_rows():
    fmap = torch.rand(2, 8, 7, 7) + 1.0
    boxes = torch.tensor([0.1, 0.1, 0.6, 0.8]).repeat(2, 10, 1)
    local = roi_features(fmap, boxes, torch.tensor([3, 0]))
    assert local[0, :3].abs().min() > 0 and not local[0, 3:].any() and not local[1].any()


def test_random_init_detector_gives_ten_padded_boxes_per_frame():
    torch.manual_seed(3)
    model = faster_rcnn(min_size=64, max_size=96)
    frames = torch.randint(0, 256, (2, 48, 80, 3), dtype=torch.uint8)
    spatial, counts = detect(model, frames)
    assert spatial.shape == (2, 10, 6) and spatial.dtype == np.float32 and counts.shape == (2,)
    assert counts.sum() > 0
    for t in range(2):
        found = spatial[t, : counts[t]]
        assert not spatial[t, counts[t]:].any()
        assert (found >= 0).all() and (found[:, :4] <= 1 + 1e-6).all()
        np.testing.assert_allclose(found[:, 4], found[:, 2] - found[:, 0], atol=1e-6)
        np.testing.assert_allclose(found[:, 5], found[:, 3] - found[:, 1], atol=1e-6)
    np.testing.assert_array_equal(box_counts(spatial), counts)


def test_box_counts_of_a_stored_spatial_feature():
    spatial = np.zeros((3, 10, 6), dtype=np.float32)
    spatial[0, :4] = 0.5
    spatial[2, :] = 0.1
    np.testing.assert_array_equal(box_counts(spatial), [4, 0, 10])


def test_missing_detector_weights_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="fasterrcnn_resnet50_fpn_coco"):
        faster_rcnn(tmp_path / "detector.pth")


@pytest.fixture(scope="module")
def masn_files(tmp_path_factory):
    """All four MASN files for one GIF (plus a broken video), 3 rows each, random weights."""
    root = tmp_path_factory.mktemp("masn")
    videos = root / "videos"
    videos.mkdir()
    make_gif(videos / "tumblr_a.gif", size="97x61", seconds=1)
    (videos / "broken.mp4").write_bytes(make_pattern_video(root / "src.mp4", seconds=1).read_bytes()[:1500])
    feats = root / "feat_r6_vsync2"
    common = ["--quiet", "--videos", str(videos), "--random-init", "--workers", "0", "--num-clips", "3"]
    files = {"res_avg": feats / "res152_avgpool.hdf5", "i3d_avg": feats / "tgif_i3d_hw7_perclip_avgpool.hdf5",
             "res_roi": feats / "tgif_btup_f_obj10.hdf5",
             "i3d_roi": feats / "tgif_i3d_roialign_hw7_perclip_avgpool_obj10.hdf5"}
    # exit status 1 from each: broken.mp4 is listed as failed, tumblr_a written
    assert main(ObjectsExtractor, [*common, "--stream", "appearance", "--out", str(files["res_roi"]),
                                   "--det-min-size", "64", "--det-max-size", "96"]) == 1
    assert main(ObjectsExtractor, [*common, "--stream", "motion", "--out", str(files["i3d_roi"]),
                                   "--clip-len", "8", "--boxes", str(files["res_roi"])]) == 1
    assert main(I3dExtractor, [*common, "--out", str(files["i3d_avg"]), "--clip-len", "8"]) == 1
    assert main(ResNetGlobal, [*common, "--masn", "--out", str(files["res_avg"])]) == 1
    return files


def test_cli_appearance_then_motion_with_the_same_boxes(masn_files):
    appearance, motion = masn_files["res_roi"], masn_files["i3d_roi"]
    with h5py.File(appearance, "r") as f:
        assert set(f) == {"image_features", "spatial_features"}
        image = f["image_features/tumblr_a"][()]
        spatial = f["spatial_features/tumblr_a"][()]
    with h5py.File(motion, "r") as f:
        assert list(f) == ["tumblr_a"]
        local = f["tumblr_a"][()]
    assert image.shape == local.shape == (3, 10, 2048) and spatial.shape == (3, 10, 6)
    assert image.dtype == local.dtype == spatial.dtype == np.float32
    counts = box_counts(spatial)
    assert counts.min() > 0
    for t in range(3):
        assert np.abs(local[t, : counts[t]]).sum(axis=1).min() > 0 and not local[t, counts[t]:].any()
    assert read_manifest(motion)["sampling"]["boxes"] == str(appearance)
    assert [f["video_id"] for f in read_failures(appearance)] == ["broken"]


def test_masn_loader_reads_the_four_files_after_rekey(masn_files, tmp_path):
    features = pytest.importorskip("masn.data.features")
    feats = tmp_path / "feat_r6_vsync2"
    shutil.copytree(masn_files["res_avg"].parent, feats)
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    (csv_dir / "Test_count_question.csv").write_text(
        "gif_name\tquestion\tanswer\tvid_id\tkey\ntumblr_a\thow many ?\t3\tCOUNT1\t52\n")
    assert rekey_main([str(p) for p in sorted(feats.glob("*.hdf5"))] + ["--csv_dir", str(csv_dir)]) == 0
    paths = features.resolve_feature_files(tmp_path, "tgif-qa")
    reader = features.VideoFeatures(paths, "", 20)
    assert reader.missing([52]) == {}
    res_avg, i3d_avg, res_roi, bbox, i3d_roi, length = reader.read(52)
    assert length == 3
    assert res_avg.shape == i3d_avg.shape == (20, 2048) and bbox.shape == (20, 10, 6)
    assert res_roi.shape == i3d_roi.shape == (20, 10, 2048)
    with h5py.File(masn_files["i3d_roi"], "r") as f:
        np.testing.assert_array_equal(i3d_roi[:3], f["tumblr_a"][()])
    assert not i3d_roi[3:].any()


def test_motion_boxes_are_looked_up_by_the_mapped_id(tmp_path):
    boxes = tmp_path / "tgif_btup_f_obj10.hdf5"
    spatial = np.zeros((3, 10, 6), dtype=np.float32)
    spatial[:, :2] = [0.1, 0.2, 0.5, 0.6, 0.4, 0.4]
    with h5py.File(boxes, "w") as f:
        f["spatial_features/52"] = spatial
        f["spatial_features/tumblr_b"] = spatial[:2]
    id_map = tmp_path / "Total_count_question.csv"
    id_map.write_text("gif_name\tquestion\tanswer\tvid_id\tkey\ntumblr_a\thow many ?\t3\tCOUNT1\t52\n")
    extractor = ObjectsExtractor(ObjectsConfig(stream="motion", boxes=boxes, id_map=[id_map], num_clips=3))
    np.testing.assert_array_equal(extractor._stored_boxes(tmp_path / "tumblr_a.gif"), spatial)
    with pytest.raises(DecodeError, match="expected \\(3, 10, 6\\)"):
        extractor._stored_boxes(tmp_path / "tumblr_b.gif")
    with pytest.raises(DecodeError, match="no spatial_features/tumblr_c"):
        extractor._stored_boxes(tmp_path / "tumblr_c.gif")
