"""The extraction base: decoding, sampling, stores, resume after a kill, shards, failures, audio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from feat_script import decode
from feat_script.base import ConfigError, list_videos, main, parse_shard, read_id_map, take_shard
from feat_script.decode import DecodeError, count_frames, ffmpeg_exe, probe, read_frames, read_frames_cfr
from feat_script.extract_audio import Audio, load_audio_16k
from feat_script.extract_frames import Frames
from feat_script.manifest import read_failures, read_manifest
from feat_script.sampling import fixed60_indices, masn_clip_indices, masn_frame_indices, read_fixed60
from feat_script.stores import Hdf5Store, NpyDirStore, PackedStore
from feat_script.synthetic_video import _ffmpeg, _x264, make_pattern_video, make_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> dict[str, Path]:
    return make_set(tmp_path_factory.mktemp("videos"))


def run_main(extractor, *args: str) -> int:
    """The CLI in this process (no interpreter start-up per call)."""
    return main(extractor, ["--quiet", *args])


def run_on_set(extractor, videos: dict[str, Path], out: Path, *args: str) -> int:
    """The CLI on the folder of the mixed video set (``make_set``), writing ``out``."""
    return run_main(extractor, "--videos", str(videos["odd"].parent), "--out", str(out), *args)


# ---------------------------------------------------------------- sampling


def test_fixed60_long_video_takes_middle_of_each_second():
    # 1-based position round((i + 0.5) * 30) = 15, 45, ... -> 0-based 14, 44, ..., 1784
    idx = fixed60_indices(1800, 30.0)
    assert len(idx) == 60
    assert idx[0] == 14 and idx[1] == 44 and idx[-1] == 1784


def test_fixed60_short_video_repeats_last_second():
    # 3 s at 25 fps (75 frames): positions round(12.5)=12, round(37.5)=38, round(62.5)=62 (ties to
    # even); then 88, 112, 138 ... wrap into the last second [51, 75]: 51 + (88-51) % 25 = 63, 62, 63 ...
    idx = fixed60_indices(75, 25.0, seconds=6)
    assert idx.tolist() == [11, 37, 61, 62, 61, 62]
    assert (fixed60_indices(75, 25.0)[3:] >= 50).all()


def test_fixed60_frames_are_the_ones_the_original_script_took(tmp_path):
    # Expected indices measured by running AVST's extract_frames_adaptive.py (moviepy 1.0.1) on the
    # same kind of video (3.2 s, 25 fps: moviepy estimates 81 frames, 80 exist, so positions past
    # the end return the previously read frame).
    video = make_pattern_video(tmp_path / "short.mp4", seconds=3.2, audio=None)
    full = read_frames(video)
    got = read_fixed60(video, seconds=8)
    picked = [int(np.flatnonzero((full == f).all(axis=(1, 2, 3)))[0]) for f in got]
    assert picked == [11, 37, 61, 75, 75, 77, 77, 79]
    assert read_fixed60(video).shape == (60, 48, 64, 3)


def test_masn_sampling_centres_and_clamped_clips():
    assert masn_frame_indices(100, 20).tolist() == list(range(2, 100, 5))
    assert masn_frame_indices(5, 20).tolist() == [k // 4 for k in range(20)]
    clips = masn_clip_indices(100, num_clips=20, clip_len=4, stride=2)
    assert clips.shape == (20, 4)
    assert clips[0].tolist() == [0, 0, 2, 4]  # centre 2, offsets -4 -2 0 +2, clamped at 0
    assert clips[-1].tolist() == [93, 95, 97, 99]


# ---------------------------------------------------------------- decoding


def test_probe_and_count_on_odd_size_gif_and_vfr(videos):
    info = probe(videos["odd"])
    assert (info.width, info.height, info.fps) == (97, 61, 25.0)
    assert info.has_audio and info.audio_rate == 44100 and info.audio_channels == 2
    assert count_frames(videos["odd"]) == 75
    assert count_frames(videos["anim"]) == 20
    assert count_frames(videos["vfr"]) == 90
    assert not probe(videos["web"]).has_audio


def test_selected_frames_equal_the_same_frames_of_a_full_decode(videos):
    for key in ("odd", "vfr", "anim"):
        full = read_frames(videos[key])
        assert len(full) == count_frames(videos[key])
        pick = [len(full) - 1, 3, 3, 0]
        np.testing.assert_array_equal(read_frames(videos[key], indices=pick), full[pick])
    assert read_frames(videos["odd"]).shape[1:] == (61, 97, 3)


@pytest.fixture(scope="module")
def slot_videos(tmp_path_factory, videos) -> dict[str, Path]:
    """Constant-rate videos (an NTSC rate, B-frames, the standard set's containers) and three with frames
    off their constant-rate slots: the set's VFR one, one whose frame 10 is a fifth of a period late, and
    one whose video starts 0.52 s after its audio."""
    d = tmp_path_factory.mktemp("slots")
    late = "if(eq(N,10),(N+0.2)/(25*TB),N/(25*TB))"
    return {**{k: videos[k] for k in ("odd", "web", "mono", "anim", "vfr")},
            "ntsc": _ffmpeg(d / "ntsc.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=30000/1001:duration=4",
                            *_x264()),
            "bframes": _ffmpeg(d / "bframes.mp4", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=24:duration=4",
                               "-c:v", "libx264", "-bf", "3"),
            "late": _ffmpeg(d / "late.mp4", "-f", "lavfi", "-i",
                            f"testsrc=size=64x48:rate=25:duration=3,settb=1/1000,setpts='{late}'",
                            "-fps_mode", "vfr", "-enc_time_base", "1:1000", *_x264()),
            "delayed": _ffmpeg(d / "delayed.mp4", "-itsoffset", "0.5", "-f", "lavfi", "-i",
                               "testsrc=size=64x48:rate=25:duration=3", "-f", "lavfi", "-i",
                               "sine=frequency=440:sample_rate=44100:duration=3.5", *_x264(), "-c:a", "aac")}


def cfr_routes(path: Path, keep: list[int]) -> tuple[tuple, tuple, list[bool]]:
    """``read_frames_cfr`` and the whole-stream route for ``keep``, and whether the one-decode route
    answered (one entry per attempt)."""
    answered = []

    def spy(*args):
        frames = real(*args)
        answered.append(frames is not None)
        return frames

    real = decode._read_on_slot
    info = probe(path)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(decode, "_read_on_slot", spy)
        got = read_frames_cfr(path, keep, info=info)
    return got, decode._stream_cfr(path, set(keep), info), answered


def assert_same_frames(got: tuple, want: tuple) -> None:
    assert got[1] == want[1] and sorted(got[0]) == sorted(want[0])
    for i, frame in want[0].items():
        np.testing.assert_array_equal(got[0][i], frame, err_msg=f"frame {i}")


@pytest.mark.parametrize("key", ["odd", "web", "mono", "anim", "ntsc", "bframes"])
def test_constant_rate_frames_decode_once_and_equal_the_whole_stream(slot_videos, key):
    info = probe(slot_videos[key])
    last = int(info.duration * info.tbr) - 2  # the last index inside the one-frame margin of the end
    got, want, answered = cfr_routes(slot_videos[key], [0, 1, last // 2, last // 2, last])
    assert answered == [True]
    assert_same_frames(got, want)


@pytest.mark.parametrize("key", ["vfr", "late", "delayed"])
def test_frames_off_their_constant_rate_slots_take_the_whole_stream(slot_videos, key):
    """VFR: past its first second the constant-rate output doubles frames; delayed: it repeats the first
    frame until the video starts; either way an index there names another frame than in the decoded
    stream. Late: every frame after the late one is back on its slot, and still the whole stream is
    taken (the flag persists)."""
    assert probe(slot_videos[key]).tbr in (25.0, 30.0)
    got, want, answered = cfr_routes(slot_videos[key], [0, 5, 20, 40, 60])
    assert answered == [False]
    assert_same_frames(got, want)
    if key != "late":
        assert not np.array_equal(want[0][40], read_frames(slot_videos[key], indices=[40])[0])


def test_a_rate_other_than_the_banners_takes_the_whole_stream(slot_videos):
    info = probe(slot_videos["odd"])
    assert decode._read_on_slot(slot_videos["odd"], np.array([0, 30]), info) is not None
    for tbr in (info.tbr * 2, info.tbr * (1 + 2 * decode.RATE_MATCH)):
        assert decode._read_on_slot(slot_videos["odd"], np.array([0, 30]), replace(info, tbr=tbr)) is None


def test_frames_near_the_end_take_the_whole_stream(slot_videos):
    """Within a frame of the banner's end (a short video's positions past its end, decided by the
    constant-rate output's tail) one decode is not tried."""
    info = probe(slot_videos["odd"])
    end = int(info.duration * info.tbr)
    for last, tried in ((end - 2, [True]), (end - 1, []), (end + 3, [])):
        got, want, answered = cfr_routes(slot_videos["odd"], [0, last])
        assert answered == tried, last
        assert_same_frames(got, want)


def test_bench_decode_runs_and_checks_the_routes_agree():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_decode.py"), "--videos", "1", "--seconds", "3",
                           "--size", "64x48"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "1 videos of 3 s at 64x48" in proc.stdout and proc.stdout.rstrip().endswith("x")


def test_one_fps_picks_the_frames_of_the_originals_ffmpeg_command(tmp_path, videos):
    from PIL import Image

    for key in ("odd", "anim", "vfr"):
        jpgs = tmp_path / key
        jpgs.mkdir()
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-i", str(videos[key]), "-y", "-r", "1", str(jpgs / "%06d.jpg")],
            check=True,
        )  # the original extract_frames.py command
        want = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(jpgs.iterdir())])
        got = read_frames(videos[key], rate=1)
        assert got.shape == want.shape
        assert np.abs(got.astype(int) - want).mean() < 12  # the same frames up to JPEG loss
    assert read_frames(videos["anim"], rate=1, size=(32, 24)).shape[1:] == (24, 32, 3)


def test_bad_files_raise_decode_error(videos):
    for key in ("corrupt", "empty"):
        with pytest.raises(DecodeError, match=videos[key].name):
            read_frames(videos[key])


# ---------------------------------------------------------------- stores


def _payload(seed: int, rows: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "": rng.standard_normal((rows, 4)).astype(np.float32),
        "box": rng.random((rows, 2, 6), np.float32),
    }


@pytest.mark.parametrize("kind", ["npy", "packed", "hdf5"])
def test_store_round_trip_resume_and_stale_temp_cleanup(tmp_path, kind):
    import h5py

    out = tmp_path / ("feat.h5" if kind == "hdf5" else "feat")
    make = {"npy": NpyDirStore, "packed": PackedStore, "hdf5": Hdf5Store}[kind]
    store = make(out, ("", "box"), {"": (4,), "box": (2, 6)})
    store.write("a", _payload(0))
    store.write("b", _payload(1, rows=5))
    store.finalize()
    # a second run adds a video and merges it with what is there
    store = make(out, ("", "box"), {"": (4,), "box": (2, 6)})
    assert store.done() == {"a", "b"}
    store.write("c", _payload(2, rows=1))
    # a dead process's temporary (pid 2**22 + 7 is not running) is removed by done()
    folder = out.parent if kind == "hdf5" else out
    stale = folder / f".x.npy.{__import__('socket').gethostname().replace('.', '_')}-{2**22 + 7}.tmp"
    stale.write_bytes(b"junk")
    assert store.done() == {"a", "b", "c"}
    assert not stale.exists()
    store.finalize()
    for vid, seed, rows in (("a", 0, 3), ("b", 1, 5), ("c", 2, 1)):
        want = _payload(seed, rows)
        if kind == "hdf5":
            with h5py.File(out) as f:
                got = {"": f[vid][()], "box": f["box"][vid][()]}
                assert set(f.keys()) == {"a", "b", "c", "box"}
        elif kind == "packed":
            got = {k: np.asarray(store.read(vid, k)) for k in ("", "box")}
        else:
            got = {k: store.read(vid, k) for k in ("", "box")}
        for k in ("", "box"):
            np.testing.assert_array_equal(got[k], want[k])
    if kind == "packed":
        index = json.loads((out / "features.index.json").read_text())
        assert index["rows"] == 9 and index["row_shape"] == [4] and index["dtype"] == "float32"
        assert np.load(out / "features.npy", mmap_mode="r").shape == (9, 4)
    if kind != "npy":
        assert not any((out.with_name(out.name + ".parts") if kind == "hdf5" else out / "parts").glob("*.npy"))


def test_npy_store_drops_a_truncated_file(tmp_path):
    store = NpyDirStore(tmp_path, ("",), {"": (4,)})
    store.write("a", _payload(0))
    store.write("b", _payload(1))
    data = (tmp_path / "b.npy").read_bytes()
    (tmp_path / "b.npy").write_bytes(data[: len(data) - 8])
    assert store.done() == {"a"}
    assert not (tmp_path / "b.npy").exists()


# ---------------------------------------------------------------- listing and shards


def test_list_videos_folder_list_file_and_duplicate_ids(tmp_path, videos):
    listed = list_videos(videos["odd"].parent)
    assert [vid for vid, _ in listed] == sorted(["odd", "web", "mono", "anim", "vfr", "corrupt", "empty"])
    lst = tmp_path / "list.txt"
    lst.write_text(f"# two videos\n{videos['odd']}\n\n{os.path.relpath(videos['anim'], tmp_path)}\n")
    assert [vid for vid, _ in list_videos(lst)] == ["anim", "odd"]
    (tmp_path / "dup").mkdir()
    for name in ("x.mp4", "x.gif"):
        (tmp_path / "dup" / name).write_bytes(b"")
    with pytest.raises(ConfigError, match="'x'"):
        list_videos(tmp_path / "dup")


def test_id_map_from_a_tgif_question_file_rekeys_and_skips_unnamed_videos(tmp_path, videos):
    csv = tmp_path / "Total_count_question.csv"  # TGIF-QA layout: MASN's HDF5 keys are the `key` column
    csv.write_text(
        "gif_name\tquestion\tanswer\tvid_id\tkey\nodd\tHow many ?\t3\tCOUNT1\t5\n"
        "anim\tHow many ?\t2\tCOUNT2\t16\nanim\tHow often ?\t2\tCOUNT3\t16\n"
    )
    out = tmp_path / "frames"
    assert run_on_set(Frames, videos, out, "--id-map", str(csv), "--workers", "0") == 0
    assert sorted(p.name for p in out.iterdir()) == ["16", "5"]
    assert read_manifest(out)["counts"]["not_in_id_map"] == 5
    two = tmp_path / "youtube_mapping.txt"
    two.write_text("-4wsuPCjDBc_5_15 vid1\nodd vid2\nodd vid3\n")
    with pytest.raises(ConfigError, match="both"):
        read_id_map(two)


def test_shards_cover_every_video_exactly_once():
    items = [f"v{i:02d}" for i in range(23)]
    parts = [take_shard(items, parse_shard(f"{i}/4")) for i in range(4)]
    assert sorted(sum(parts, [])) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    for bad in ("4/4", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_sharded_cli_runs_cover_the_set_and_list_failures(tmp_path, videos):
    out = tmp_path / "frames"
    for i, status in enumerate((0, 1, 1)):  # shards 1 and 2 hold corrupt and empty: exit status 1
        workers = "1" if i == 0 else "0"
        assert run_on_set(Frames, videos, out, "--shard", f"{i}/3", "--workers", workers) == status
    assert sorted(p.name for p in out.iterdir()) == ["anim", "mono", "odd", "vfr", "web"]
    assert sorted(p.name for p in (out / "odd").iterdir())[0] == "000001.jpg"
    assert sorted(f["video_id"] for f in read_failures(out)) == ["corrupt", "empty"]
    manifest = read_manifest(out)
    assert manifest["extractor"] == "frames" and manifest["sampling"]["mode"] == "1fps"
    assert "ffmpeg" in manifest["versions"] and manifest["status"] == "complete"


def test_fixed60_frames_cli_gives_exactly_n_frames_named_8_digits(tmp_path, videos):
    out = tmp_path / "frames60"
    assert run_on_set(Frames, videos, out, "--mode", "fixed60", "--seconds", "5", "--workers", "0") == 1
    for vid in ("anim", "mono", "odd", "vfr", "web"):
        names = sorted(p.name for p in (out / vid).iterdir())
        assert names == [f"{i:08d}.jpg" for i in range(1, 6)]


# ---------------------------------------------------------------- audio


def _wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())


def test_audio_matches_moviepy_bit_for_bit(tmp_path, videos):
    from moviepy import VideoFileClip

    for key in ("odd", "mono"):  # 44.1 kHz stereo and 22.05 kHz mono sources
        with VideoFileClip(str(videos[key])) as clip:
            clip.audio.write_audiofile(str(tmp_path / f"{key}.wav"), fps=16000, logger=None)
        want = _wav(tmp_path / f"{key}.wav")
        got = load_audio_16k(videos[key])
        assert got.dtype == np.int16 and got.shape == want.shape and got.shape[1] == 2
        np.testing.assert_array_equal(got, want)


def test_audio_cli_writes_wavs_and_lists_videos_without_audio(tmp_path, videos):
    out = tmp_path / "audio"
    assert run_on_set(Audio, videos, out, "--workers", "0") == 1  # some failed, some written
    assert sorted(p.stem for p in out.glob("*.wav")) == ["mono", "odd"]
    assert _wav(out / "odd.wav").shape == (48000, 2)  # 3 s at 16 kHz, stereo
    reasons = {f["video_id"]: f["reason"] for f in read_failures(out)}
    assert sorted(reasons) == ["anim", "corrupt", "empty", "vfr", "web"]
    assert "no audio track" in reasons["web"]


def test_missing_videos_folder_is_a_clear_error(tmp_path, capsys):
    assert run_main(Audio, "--videos", str(tmp_path / "nope"), "--out", str(tmp_path / "o")) == 2
    assert "no such folder" in capsys.readouterr().err


def test_short_video_audio_length(tmp_path):
    video = make_pattern_video(tmp_path / "short.mp4", seconds=1)
    assert load_audio_16k(video).shape == (16000, 2)
