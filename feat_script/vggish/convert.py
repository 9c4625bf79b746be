"""Convert VGGish weights to our layout: the official TF checkpoint or torchvggish's ``.pth``.

    python -m feat_script.vggish.convert vggish_model.ckpt --out checkpoints/vggish.pt
    python -m feat_script.vggish.convert vggish-10086976.pth --out checkpoints/vggish.pt

TensorFlow is needed only for the ``.ckpt`` source and is imported only there. The written file
is a plain state_dict (``torch.load(..., weights_only=True)`` reads it), loaded strictly.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from engine.cli import CommandParser
from engine.errors import run_cli
from feat_script.stores import atomic_file
from feat_script.vggish.model import CONV_LAYERS, VGGish
from feat_script.weights import WEIGHTS, WeightsError, read_state_dict

TF_SCOPES = {"conv1": "conv1", "conv2": "conv2", "conv3_1": "conv3/conv3_1", "conv3_2": "conv3/conv3_2",
             "conv4_1": "conv4/conv4_1", "conv4_2": "conv4/conv4_2", "fc1_1": "fc1/fc1_1",
             "fc1_2": "fc1/fc1_2", "fc2": "fc2"}
TORCHVGGISH_PREFIXES = {"conv1": "features.0", "conv2": "features.3", "conv3_1": "features.6",
                        "conv3_2": "features.8", "conv4_1": "features.11", "conv4_2": "features.13",
                        "fc1_1": "embeddings.0", "fc1_2": "embeddings.2", "fc2": "embeddings.4"}
CONV_NAMES = {name for name, _, _ in CONV_LAYERS}


def _checkpoint_exists(path: Path) -> bool:
    return path.is_file() or Path(f"{path}.index").is_file()


def from_tf_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``vggish/<scope>/{weights,biases}``: conv HWIO -> OIHW, dense [in, out] -> [out, in]."""
    path = Path(path)
    if not _checkpoint_exists(path):
        raise FileNotFoundError(f"TensorFlow checkpoint not found: {path}. {WEIGHTS['vggish'].source}")
    try:
        import tensorflow as tf
    except ImportError as err:
        raise WeightsError(f"{path}: reading a TensorFlow .ckpt needs tensorflow (pip install tensorflow-cpu), "
                           "or convert torchvggish's .pth instead") from err
    try:
        reader = tf.train.load_checkpoint(str(path))
    except (tf.errors.OpError, ValueError) as err:
        raise WeightsError(f"{path}: not a readable TensorFlow checkpoint ({str(err).splitlines()[0]})") from err
    available = reader.get_variable_to_shape_map()
    state = {}
    for ours, scope in TF_SCOPES.items():
        names = (f"vggish/{scope}/weights", f"vggish/{scope}/biases")
        missing = [n for n in names if n not in available]
        if missing:
            raise WeightsError(f"{path} is not a VGGish checkpoint: missing {missing}")
        weight = torch.from_numpy(reader.get_tensor(names[0]).copy())
        weight = weight.permute(3, 2, 0, 1) if ours in CONV_NAMES else weight.T
        state[f"{ours}.weight"] = weight.contiguous().float()
        state[f"{ours}.bias"] = torch.from_numpy(reader.get_tensor(names[1]).copy()).float()
    return state


def from_torchvggish(path: str | Path) -> dict[str, torch.Tensor]:
    """Rename torchvggish's ``features.N`` / ``embeddings.N`` keys (``pproc.*`` is ignored)."""
    source = read_state_dict(path, "torchvggish", WEIGHTS["vggish"].source)
    source = {k: v for k, v in source.items() if not k.startswith("pproc.")}
    expected = {f"{p}.{s}" for p in TORCHVGGISH_PREFIXES.values() for s in ("weight", "bias")}
    if set(source) != expected:
        raise WeightsError(f"{path} is not a torchvggish state_dict: missing {sorted(expected - set(source))}, "
                         f"unexpected {sorted(set(source) - expected)}")
    return {f"{ours}.{s}": source[f"{theirs}.{s}"].float().contiguous()
            for ours, theirs in TORCHVGGISH_PREFIXES.items() for s in ("weight", "bias")}


def convert(src: str | Path) -> dict[str, torch.Tensor]:
    """Pick the reader by suffix (``.pth``/``.pt`` = torchvggish, anything else = TF) and check the result."""
    state = from_torchvggish(src) if Path(src).suffix in (".pth", ".pt") else from_tf_checkpoint(src)
    VGGish().load_state_dict(state)
    return state


def save_state_dict(state: dict[str, torch.Tensor], out: str | Path) -> None:
    """Write atomically: a temporary file in the target folder, then a rename."""
    with atomic_file(Path(out)) as tmp:
        torch.save(state, tmp)


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", help="vggish_model.ckpt (TensorFlow) or torchvggish's vggish-10086976.pth")
    parser.add_argument("--out", required=True, help="where to write our state_dict (.pt)")
    args = parser.parse_command(argv)
    save_state_dict(convert(args.src), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
