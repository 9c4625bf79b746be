"""The clip extractor: its frame features equal open_clip's own preprocessing + ``encode_image`` and its
text features open_clip's ``tokenize`` + ``encode_text`` (a two-layer CLIP built by the same code as
ViT-L-14-336); CLIP's transform on an image equals torchvision's and open_clip's; OpenAI's TorchScript
weight files are read without running them; feat_script imports without the extra."""
from __future__ import annotations

import io
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sota_tiny import needs_clip_extra

from benchkit.small_sota import photo_like, tiny_clip_arch
from feat_script.preprocess import pixels_to_input
from feat_script.recipes_sota import CLIP_MEAN, CLIP_STD

pytestmark = needs_clip_extra


def _clip(**config):
    from feat_script.extract_clip import Clip, ClipConfig

    return Clip(ClipConfig(**{"random_init": True, "device": "cpu", "arch": tiny_clip_arch(), **config}))


@pytest.mark.slow
def test_frame_features_equal_open_clip_encode_image(tmp_path):
    import open_clip

    from feat_script.sampling import read_fixed60
    from feat_script.synthetic_video import make_pattern_video

    video = make_pattern_video(tmp_path / "v.mp4", size="72x40", seconds=2, audio=None, pattern="testsrc2")
    extractor = _clip(seconds=5, jpeg_quality=0, batch_size=3)  # batches of 3 rows: 3 + 2
    ours = extractor.extract(video)["clip"]
    model, _ = extractor.ready()
    transform = open_clip.image_transform(28, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                          std=open_clip.OPENAI_DATASET_STD)
    images = torch.stack([transform(Image.fromarray(f)) for f in read_fixed60(video, 5)])
    with torch.no_grad():
        reference = model.encode_image(images).numpy()
    assert ours.shape == (5, 24) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)
    assert np.abs(np.linalg.norm(ours, axis=1) - 1).max() > 1e-2  # not L2-normalised


def test_text_features_equal_open_clip_encode_text():
    import open_clip

    texts = ["Is the cello in the video always playing?", "The ukulele is playing in this video.", "a"]
    extractor = _clip(batch_size=2)
    ours = extractor.encode_texts(texts)
    model, _ = extractor.ready()
    with torch.no_grad():
        reference = model.encode_text(open_clip.tokenize(texts)).numpy()
    assert ours.shape == (3, 24) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5)


def test_clip_transform_equals_torchvision_and_open_clip_on_an_image():
    import open_clip
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    from feat_script.extract_clip import clip_preprocess

    frame = photo_like(611, 353)
    ours = pixels_to_input(torch.from_numpy(clip_preprocess(frame[None], 336, 0)), CLIP_MEAN, CLIP_STD)
    stated = transforms.Compose([transforms.Resize(336, interpolation=InterpolationMode.BICUBIC),
                                 transforms.CenterCrop(336), transforms.ToTensor(),
                                 transforms.Normalize(CLIP_MEAN, CLIP_STD)])(Image.fromarray(frame))[None]
    theirs = open_clip.image_transform(336, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                       std=open_clip.OPENAI_DATASET_STD)(Image.fromarray(frame))[None]
    assert ours.shape == (1, 3, 336, 336)
    torch.testing.assert_close(ours, stated, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


@pytest.mark.filterwarnings("ignore")  # torch.jit's deprecation and tracer warnings
def test_an_openai_style_torchscript_file_loads_like_its_state_dict(tmp_path):
    """OpenAI's files: traced, weights in float16, plus tensors such as input_resolution that are no weights."""
    import open_clip

    torch.manual_seed(3)
    source = open_clip.create_model(tiny_clip_arch(), force_quick_gelu=True).eval()
    open_clip.convert_weights_to_fp16(source)
    source.register_buffer("input_resolution", torch.tensor(28))
    images, text = torch.ones(1, 3, 28, 28, dtype=torch.half), torch.zeros(1, 77, dtype=torch.int)
    traced = torch.jit.trace_module(source, {"encode_image": (images,), "encode_text": (text,)}, check_trace=False)
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(traced, path)
    model, _ = _clip(random_init=False, weights=path).ready()
    expected = {k: v for k, v in source.state_dict().items() if k != "input_resolution"}
    assert model.state_dict().keys() == expected.keys()
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, expected[key].float(), rtol=0, atol=0, msg=key)


def test_a_torchscript_file_holding_anything_but_tensors_is_refused_unrun(tmp_path):
    from feat_script.jit_archive import ArchiveError, read_torchscript_tensors

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "hostile.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("m/data.pkl", pickle.dumps(Payload(), protocol=2))
        archive.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
    out = io.StringIO()
    with pytest.raises(ArchiveError, match="print, which is not a tensor"):
        sys.stdout, saved = out, sys.stdout
        try:
            read_torchscript_tensors(path)
        finally:
            sys.stdout = saved
    assert "ran" not in out.getvalue()


@pytest.mark.slow
def test_feat_script_imports_and_says_which_extra_without_open_clip():
    code = ("import sys; sys.modules['open_clip'] = None; sys.modules['timm'] = None\n"
            "import feat_script.registry, feat_script.run_recipe\n"
            "from feat_script.extract_clip import Clip, ClipConfig\n"
            "from engine.errors import run_cli\n"
            "sys.exit(run_cli(lambda: Clip(ClipConfig(random_init=True)).ready()))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: open_clip is not installed") and "pip install -e '.[clip]'" in line


class _Exploit:
    """Unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name, suffix", [("clip", ".pt"), ("vit-tome", ".pth"), ("vit-tome", ".safetensors")])
def test_hostile_or_garbage_weights_are_one_line_and_nothing_runs(name, suffix, tmp_path, capsys):
    from feat_script.base import main
    from feat_script.registry import extractor_class

    marker, videos = tmp_path / "ran", tmp_path / "videos"
    videos.mkdir()
    (videos / "v.mp4").write_bytes(b"")  # never decoded: the weights are read first
    weights = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    else:
        torch.save({"w": _Exploit(marker)}, weights)
    argv = ["--quiet", "--workers", "0", "--videos", str(videos), "--out", str(tmp_path / "out"), "--weights",
            str(weights)]
    assert main(extractor_class(name), argv) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and str(weights) in line
    assert not marker.exists() and not (tmp_path / "out").exists()
