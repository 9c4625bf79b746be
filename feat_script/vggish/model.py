"""VGGish (AudioSet's VGG-like audio embedder) in PyTorch.

Layer names follow the TensorFlow-slim variables of ``vggish_slim.py`` (``vggish/conv3/conv3_1``
becomes ``conv3_1``), so the mapping from the official checkpoint is one line per layer
(``feat_script.vggish.convert``). The 128-d embedding keeps its ReLU, as in the slim definition
AVST used, so features are non-negative. Flattening goes through NHWC order to match
``slim.flatten`` on TensorFlow's channels-last maps.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from feat_script.weights import WEIGHTS, WeightsError, build_loaded, read_state_dict

EMBEDDING_SIZE = 128
PCA_HELP = (
    "Get vggish_pca_params.npz from tensorflow/models (research/audioset/vggish, "
    "https://storage.googleapis.com/audioset/vggish_pca_params.npz) or torchvggish's "
    "vggish_pca_params-970ea276.pth"
)

CONV_LAYERS = (("conv1", 1, 64), ("conv2", 64, 128), ("conv3_1", 128, 256), ("conv3_2", 256, 256),
               ("conv4_1", 256, 512), ("conv4_2", 512, 512))
POOL_AFTER = ("conv1", "conv2", "conv3_2", "conv4_2")
FC_LAYERS = (("fc1_1", 512 * 6 * 4, 4096), ("fc1_2", 4096, 4096), ("fc2", 4096, EMBEDDING_SIZE))


class VGGish(nn.Module):
    """[N, 96, 64] log-mel examples -> [N, 128] embeddings (after ReLU)."""

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in CONV_LAYERS:
            self.add_module(name, nn.Conv2d(cin, cout, kernel_size=3, padding=1))
        for name, fin, fout in FC_LAYERS:
            self.add_module(name, nn.Linear(fin, fout))

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        x = examples.unsqueeze(1)
        for name, _, _ in CONV_LAYERS:
            x = F.relu(getattr(self, name)(x))
            if name in POOL_AFTER:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
        x = x.permute(0, 2, 3, 1).flatten(1)
        for name, _, _ in FC_LAYERS:
            x = F.relu(getattr(self, name)(x))
        return x


def vggish(weights: str | Path | None = None) -> VGGish:
    """Build VGGish; ``weights`` is our converted file (random init when None: tests and demo only)."""
    return build_loaded(VGGish, weights, "converted VGGish", WEIGHTS["vggish"].source).eval()


class PCAPostprocessor(nn.Module):
    """AudioSet's post-processing: PCA with whitening, then optional 8-bit quantisation.

    Quantised values are returned as floats in [0, 255] (``round((clip(x, -2, 2) + 2) * 255 / 4)``).
    """

    def __init__(self, eigen_vectors: torch.Tensor, means: torch.Tensor, quantize: bool = True) -> None:
        super().__init__()
        eigen_vectors = eigen_vectors.reshape(EMBEDDING_SIZE, EMBEDDING_SIZE)
        self.register_buffer("pca_eigen_vectors", eigen_vectors.float())
        self.register_buffer("pca_means", means.reshape(EMBEDDING_SIZE).float())
        self.quantize = quantize

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        pca = (embeddings - self.pca_means) @ self.pca_eigen_vectors.T
        if not self.quantize:
            return pca
        return torch.round((pca.clamp(-2.0, 2.0) + 2.0) * (255.0 / 4.0))


def load_pca(path: str | Path, quantize: bool = True) -> PCAPostprocessor:
    """Read ``vggish_pca_params.npz`` (official) or torchvggish's PCA ``.pth``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGGish PCA parameters not found: {path}. {PCA_HELP}")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as params:
                arrays = {k: torch.from_numpy(params[k]) for k in params.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise WeightsError(f"{path}: not a readable .npz of numeric arrays ({err}). {PCA_HELP}") from err
    else:
        state = read_state_dict(path, "VGGish PCA", PCA_HELP, numpy_arrays=True)
        arrays = {k: torch.as_tensor(v) for k, v in state.items()}
    if {"pca_eigen_vectors", "pca_means"} - set(arrays):
        raise WeightsError(f"{path} lacks pca_eigen_vectors / pca_means (has {sorted(arrays)[:5]}). {PCA_HELP}")
    shapes = {k: tuple(arrays[k].shape) for k in ("pca_eigen_vectors", "pca_means")}
    if arrays["pca_eigen_vectors"].numel() != EMBEDDING_SIZE ** 2 or arrays["pca_means"].numel() != EMBEDDING_SIZE:
        raise WeightsError(f"{path}: PCA arrays of shapes {shapes}, expected 128x128 and 128. {PCA_HELP}")
    return PCAPostprocessor(arrays["pca_eigen_vectors"], arrays["pca_means"], quantize=quantize)
