"""Every listed input of an extraction ends as written, already done, or a failure with its reason,
counted once; the exit status says whether any failed (1) or all did (2)."""
from __future__ import annotations

import builtins
import errno
import os
from pathlib import Path

import pytest

import feat_script.base as base
from feat_script.base import EXIT_STATUS, build_parser, exit_status, list_videos, main
from feat_script.extract_frames import Frames
from feat_script.manifest import read_failures, read_manifest
from feat_script.synthetic_video import make_pattern_video

GOOD = ("a", "g")  # a real video and a working link to it
BAD = {
    "b": "broken symlink",
    "c": "symlink loop",
    "d": "not a regular file (a folder)",
    "e": "not a regular file (a FIFO",
    "f": "no video stream",
}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_pattern_video(tmp_path_factory.mktemp("src") / "src.mp4", seconds=1)


def mixed_folder(root: Path, video: Path) -> Path:
    """A folder holding one input of each kind a user may have named ``*.mp4``."""
    folder = root / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(video.read_bytes())
    (folder / "g.mp4").symlink_to(folder / "a.mp4")
    (folder / "b.mp4").symlink_to(root / "gone.mp4")
    (folder / "c.mp4").symlink_to(folder / "c.mp4")
    (folder / "d.mp4").mkdir()
    os.mkfifo(folder / "e.mp4")
    (folder / "f.mp4").write_bytes(b"not a video at all" * 10)
    return folder


def frames(videos: Path, out: Path, *flags: str) -> int:
    return main(Frames, ["--workers", "0", "--quiet", "--videos", str(videos), "--out", str(out), *flags])


def reasons(out: Path) -> dict[str, str]:
    return {f["video_id"]: f["reason"] for f in read_failures(out)}


def test_every_input_is_written_done_or_a_named_failure(tmp_path, video, capsys):
    folder, out = mixed_folder(tmp_path, video), tmp_path / "out"
    assert [vid for vid, _ in list_videos(folder)] == sorted([*GOOD, *BAD])
    assert frames(folder, out) == 1
    assert sorted(p.name for p in out.iterdir()) == list(GOOD)
    got = reasons(out)
    assert sorted(got) == sorted(BAD)
    for vid, why in BAD.items():
        assert why in got[vid] and str(folder / f"{vid}.mp4") in got[vid], got[vid]
    counts = read_manifest(out)["counts"]
    assert counts["listed_in_shard"] == 7 and counts["written"] == 2 and counts["failed"] == 5
    assert counts["already_done"] == 0 and counts["refused_before_decoding"] == 4
    assert "5 of 7 videos failed (2 written, 0 done before)" in capsys.readouterr().err

    # resumed: the two done ones are counted once as done, the failures again, nothing twice
    assert frames(folder, out) == 1
    counts = read_manifest(out)["counts"]
    assert (counts["already_done"], counts["written"], counts["failed"]) == (2, 0, 5)
    assert counts["already_done"] + counts["written"] + counts["failed"] == counts["listed_in_shard"]


def test_a_run_in_which_every_input_fails_exits_2(tmp_path, video, capsys):
    folder = mixed_folder(tmp_path, video)
    for vid in GOOD:
        (folder / f"{vid}.mp4").unlink()
    out = tmp_path / "out"
    assert frames(folder, out) == 2
    assert sorted(reasons(out)) == sorted(BAD)
    assert "5 of 5 videos failed (0 written, 0 done before)" in capsys.readouterr().err


def test_a_listed_path_that_is_missing_or_unreadable_is_named(tmp_path, video, monkeypatch):
    good = tmp_path / "ok.mp4"
    good.write_bytes(video.read_bytes())
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(video.read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text(f"ok.mp4\n# a comment\nmissing.mp4\n{locked}\n")
    real_open = builtins.open

    def refusing_open(path, *args, **kwargs):  # root reads a chmod-000 file; refuse it as a user's system would
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(base, "open", refusing_open, raising=False)
    out = tmp_path / "out"
    assert frames(listing, out) == 1
    got = reasons(out)
    assert sorted(got) == ["locked", "missing"]
    assert got["missing"].endswith("missing.mp4: no such file")
    assert got["locked"].endswith("locked.mp4: unreadable (Permission denied)")
    assert sorted(p.name for p in out.iterdir()) == ["ok"]


def test_a_list_file_that_is_not_text_is_one_line(tmp_path, capsys):
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"\xff\xfe\x00bad")
    assert frames(listing, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --videos") and "UTF-8" in err[0]
    assert not (tmp_path / "out").exists()


def test_two_videos_with_one_stem_from_different_folders_are_refused(tmp_path, video, capsys):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.mp4").write_bytes(video.read_bytes())
    listing = tmp_path / "list.txt"
    listing.write_text("x/same.mp4\ny/same.mp4\n")
    assert frames(listing, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "two files give the video id 'same'" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(("succeeded", "failed", "status"), [(0, 0, 0), (3, 0, 0), (1, 1, 1), (5, 2, 1), (0, 1, 2)])
def test_exit_status(succeeded, failed, status):
    assert exit_status(succeeded=succeeded, failed=failed) == status


def test_exit_status_is_in_the_help():
    text = " ".join(build_parser(Frames).format_help().split())
    assert " ".join(EXIT_STATUS.split()) in text
    assert "1 when some failed" in text and "2 when none is done" in text


def test_a_clean_run_exits_0_and_counts_each_input_once(tmp_path, video):
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "only.mp4").write_bytes(video.read_bytes())
    out = tmp_path / "not" / "yet" / "out"  # --out may be several folders below the first that exists
    assert frames(folder, out, "--batch-size", "1") == 0  # the smallest batch is allowed
    counts = read_manifest(out)["counts"]
    assert counts == {"listed_in_shard": 1, "already_done": 0, "not_in_id_map": 0, "refused_before_decoding": 0,
                      "written": 1, "failed": 0, "done_total": 1}


def test_id_map_rows_without_the_key_column_name_no_video(tmp_path):
    """A TGIF-QA question file's row that stops before ``key`` maps nothing (the last column is the
    boundary: a row that ends just before it is short, one that reaches it is read)."""
    from feat_script.base import read_id_map

    path = tmp_path / "q.csv"
    path.write_text("gif_name\tquestion\tkey\nfull\tq\t7\nshort\tq\n")
    assert read_id_map(path) == {"full": "7"}
