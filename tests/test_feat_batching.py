"""The extraction loop as a GPU needs it, checked on the CPU: forwards filled with rows of several
videos and split back per video, worker items as uint8 torch tensors, pixels normalised on the
device bit for bit as the workers did, and durable writes in a thread that loses nothing."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from feat_script.base import Extractor, _Decoded, main
from feat_script.batching import NoRows, RowBatcher
from feat_script.decode import DecodeError, read_frames
from feat_script.extract_14x14 import Res18x14
from feat_script.preprocess import pixels_to_input, resize_frames, to_tensor_normalize
from feat_script.recipes import KINETICS_MEAN, KINETICS_STD
from feat_script.synthetic_video import make_pattern_video
from feat_script.weights import build_loaded
from feat_script.writer import BackgroundWriter


class TinyConv(Extractor):
    """1-fps frames at 16x16 as uint8 pixels, a random conv net: the real loop in a second."""

    name = "tinyconv"
    pixel_stats = (KINETICS_MEAN, KINETICS_STD)
    seen: list[int] = []  # rows per forward

    def load(self, video: Path) -> dict[str, np.ndarray]:
        return {"frames": resize_frames(read_frames(video, rate=1), 16, 16)}

    def build_model(self) -> torch.nn.Module:
        self.weights_path = None if self.config.random_init else Path(self.config.weights)
        net = build_loaded(lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                                       torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
                           self.weights_path, "tiny")
        net.register_forward_pre_hook(lambda module, args: TinyConv.seen.append(len(args[0])))
        return net

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"": (4,)}


@pytest.fixture(scope="module")
def short_videos(tmp_path_factory) -> Path:
    """Three short videos of a few rows at 1 fps."""
    folder = tmp_path_factory.mktemp("short")
    for name, seconds in (("a", 1), ("b", 2), ("c", 3)):
        make_pattern_video(folder / f"{name}.mp4", seconds=seconds, audio=None)
    return folder


def cli(videos: Path, out: Path, *flags: str) -> int:
    TinyConv.seen = []
    return main(TinyConv, ["--quiet", "--workers", "0", "--random-init", "--exact", "--videos", str(videos),
                           "--out", str(out), *flags])


def test_one_forward_spans_several_short_videos_and_outputs_equal_per_video_runs(short_videos, tmp_path):
    rows = [len(read_frames(short_videos / f"{vid}.mp4", rate=1)) for vid in ("a", "b", "c")]
    assert cli(short_videos, tmp_path / "together", "--batch-size", "4") == 0
    assert TinyConv.seen == [4] * (sum(rows) // 4) + [sum(rows) % 4] * bool(sum(rows) % 4)  # full forwards
    assert max(rows) < 4 or rows[0] % 4  # so at least one forward took rows of two videos
    for vid in ("a", "b", "c"):
        alone = tmp_path / f"alone_{vid}"
        alone.mkdir()
        os.symlink(short_videos / f"{vid}.mp4", alone / f"{vid}.mp4")
        assert cli(alone, tmp_path / f"out_{vid}", "--batch-size", "4") == 0
        want = np.load(tmp_path / f"out_{vid}" / f"{vid}.npy")
        got = np.load(tmp_path / "together" / f"{vid}.npy")
        assert got.shape == (len(read_frames(short_videos / f"{vid}.mp4", rate=1)), 4)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_batcher_splits_back_in_order_and_drops_a_video_that_fails_midway():
    sizes = []

    def forward(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        return x * 10

    def failing():
        yield np.full((2, 1), 7.0, np.float32)
        raise DecodeError("broken stream")

    batcher = RowBatcher(forward, 3, torch.device("cpu"))
    done = batcher.add("a", torch.tensor([[1.0], [2.0]]))
    with pytest.raises(DecodeError):
        batcher.add("bad", failing())  # its first row completes a batch with a's rows, then it fails
    with pytest.raises(NoRows):
        batcher.add("empty", iter([]))
    done += batcher.add("b", [np.array([[3.0]]), np.array([[4.0], [5.0]])])
    done += batcher.finish()
    assert [key for key, _ in done] == ["a", "b"]
    np.testing.assert_array_equal(done[0][1], [[10.0], [20.0]])
    np.testing.assert_array_equal(done[1][1], [[30.0], [40.0], [50.0]])
    assert sizes == [3, 3]  # a + bad's first row; bad's second row dropped, b's three rows


def test_worker_items_are_uint8_torch_tensors(short_videos):
    extractor = _built(Res18x14)
    _, item, error = _Decoded(extractor, [("c", short_videos / "c.mp4")], tensors=True)[0]
    assert error is None
    assert isinstance(item["frames"], torch.Tensor) and item["frames"].dtype == torch.uint8
    assert tuple(item["frames"].shape[1:]) == (224, 224, 3)  # 4x fewer bytes than float32 [T, 3, 224, 224]


@pytest.mark.parametrize("shape", [(5, 9, 7, 3), (2, 4, 9, 7, 3)])
def test_device_normalisation_is_the_workers_bit_for_bit(shape):
    pixels = np.random.RandomState(0).randint(0, 256, shape).astype(np.uint8)
    flat = pixels.reshape(-1, *shape[-3:])
    want = to_tensor_normalize(flat, KINETICS_MEAN, KINETICS_STD)  # float32 [N, 3, H, W], as the workers sent
    if len(shape) == 5:
        want = want.reshape(shape[0], shape[1], 3, *shape[2:4]).transpose(0, 2, 1, 3, 4)
    got = pixels_to_input(torch.from_numpy(pixels), KINETICS_MEAN, KINETICS_STD)
    np.testing.assert_array_equal(got.numpy(), want)
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    assert got.is_contiguous(memory_format=fmt)  # the fast path's layout, without a copy


def test_network_output_is_the_same_as_with_normalised_float_input():
    extractor = _built(Res18x14, "--exact")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU()).eval()
    pixels = np.random.RandomState(1).randint(0, 256, (3, 12, 10, 3)).astype(np.uint8)
    with torch.inference_mode():
        want = model(torch.from_numpy(to_tensor_normalize(pixels, KINETICS_MEAN, KINETICS_STD)))
        got = extractor.forward(model, torch.from_numpy(pixels))
    assert torch.equal(got, want)


def test_writer_writes_in_order_in_its_thread_and_raises_its_error_after_writing_what_came_before():
    written, threads = [], set()

    def write(name: str) -> bool:
        threads.add(threading.current_thread().name)
        if name == "full":
            raise OSError(28, "No space left on device")
        written.append(name)
        return name != "failed"

    with BackgroundWriter(write) as writer:
        for name in ("a", "failed", "b"):
            writer.submit(name)
    assert written == ["a", "failed", "b"] and (writer.written, writer.failed) == (2, 1)
    assert threads == {"feature-writer"}

    with pytest.raises(OSError, match="No space"), BackgroundWriter(write) as writer:
        writer.submit("c")
        writer.submit("full")
        writer.submit("d")  # after the error: not written
    assert written[-1] == "c"

    with pytest.raises(KeyboardInterrupt), BackgroundWriter(write) as writer:
        writer.submit("e")
        raise KeyboardInterrupt  # the loop dies: what it submitted is still written
    assert written[-1] == "e"


def _built(cls: type[Extractor], *argv: str) -> Extractor:
    """The extractor as its CLI builds it from ``argv``."""
    import argparse

    from feat_script.base import add_common_args

    parser = argparse.ArgumentParser()
    add_common_args(parser, cls.stores, cls.default_store, cls.default_batch_size)
    cls.add_args(parser)
    args = parser.parse_args(["--videos", "v", "--out", "o", "--random-init", "--sampling", "1fps", *argv])
    return cls(cls.config_from_args(args))
