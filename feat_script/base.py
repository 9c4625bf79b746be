"""The base every extractor stands on: an object with ``extract(video) -> {key: array}``, and the CLI
run loop over it: list -> shard -> skip done -> decode in workers -> model -> store.

An extractor is built from its ``Config`` (a dataclass: weights, batch size, device, sampling...; no
argparse inside). It says how to turn one video file into arrays (``load``, run in DataLoader worker
processes so the model never waits on ffmpeg), which model to run (``build_model``) and how to
apply it to one chunk of at most ``batch_size`` rows (``forward``, by default ``model(chunk)``).
From code, ``extract(video)`` does both for one video. The CLI (``main``) is a thin layer: the
common flags plus the extractor's, a ``Config`` built from them (flag names = field names), then
``run``: video listing, ``--shard i/n``, resuming (videos already in the output are verified and
skipped), atomic writes, the failures list, the manifest and the progress bar.

Feeding a GPU: workers hand over torch tensors (pinned by the DataLoader on CUDA, so the copy to the
device is asynchronous); image extractors send uint8 pixels and name their ``pixel_stats`` (mean,
std), applied on the device by ``inputs``; each forward takes ``--batch-size`` rows gathered across
consecutive videos (``feat_script.batching``: a short video does not get a forward of its own), a
video's outputs stay on the device until its last row is done and come back in one copy (past 64 MB,
a long video's, they wait in a temporary spill file the store then writes block by block); the
durable writes (fsync, rename) run in a writer thread (``feat_script.writer``). cuDNN autotuning is
on unless ``--exact``; TF32 stays off (features are float32 and match the originals'); both are
recorded in the manifest.

A new extractor in eight lines::

    class Gray(Extractor):
        name = "gray"                                   # manifest + default kind
        def load(self, video):                          # worker process
            frames = read_frames(video, rate=1)         # uint8 [T, H, W, 3] at 1 fps
            return {"frames": frames.mean(-1, dtype=np.float32)}
        def build_model(self):                          # forward(model, chunk) = model(chunk)
            return torch.nn.Flatten()

    if __name__ == "__main__":
        raise SystemExit(main(Gray))

Extractors that are not one model over one batched input (detector + RoIAlign) override
``compute(model, item) -> {key: array}`` instead of ``forward``; they take one video per call.
Multi-output extractors list their keys in ``outputs`` (``""`` is the main one; see
``feat_script.stores`` for the layouts).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from engine.cli import CommandParser, accept_both_spellings, non_negative_int, only_when, positive_int, seed_int
from engine.device import autocast, resolve_device
from engine.errors import UserError, run_cli
from engine.run import kernel_settings
from feat_script.batching import NoRows, RowBatcher
from feat_script.decode import DecodeError
from feat_script.manifest import record_failure, sha256_file, sidecar, write_manifest
from feat_script.preprocess import pixels_to_input
from feat_script.shards import record_shard, shard_spec
from feat_script.stores import FramesStore, Hdf5Store, NpyDirStore, PackedStore, Store, WavStore
from feat_script.streams import Spill, bound_heap_growth, iter_blocks
from feat_script.weights import resolve
from feat_script.writer import BackgroundWriter

# fork_rng saves and restores the process's one CPU generator: two builds at once (an answerer builds in
# threads) would interleave their seeds and restores, so a random initialisation would depend on timing
_BUILD_LOCK = threading.Lock()

VIDEO_EXTENSIONS = (
    ".mp4",
    ".webm",
    ".mkv",
    ".gif",
    ".avi",
    ".mov",
    ".m4v",
    ".flv",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".3gp",
)


class ConfigError(UserError, ValueError):
    """Bad command line or missing input file; ``main`` prints it and exits with status 2."""


def list_videos(spec: Path) -> list[tuple[str, Path]]:
    """``(video_id, path)`` pairs, sorted by id, from a folder or a text file of paths.

    A folder gives its entries named with a video extension (not recursive), whatever they are: one
    that cannot be read (a broken link, a folder...) is a failure of the run (``input_problem``), not
    left out without a word. A list file gives one path per line (relative paths are relative to the
    list file; blank lines and ``#`` lines skipped). The id is the file name without its extension;
    two files with one id are an error.
    """
    spec = Path(spec)
    if spec.is_dir():
        paths = [p for p in spec.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS]
    elif spec.is_file():
        try:
            lines = [ln.strip() for ln in spec.read_text(encoding="utf-8").splitlines()]
        except (UnicodeDecodeError, OSError) as err:
            raise ConfigError(f"--videos {spec}: not a readable UTF-8 list of paths ({err}); give a folder "
                              "or a text file with one path per line") from None
        paths = [
            (spec.parent / ln) if not Path(ln).is_absolute() else Path(ln)
            for ln in lines
            if ln and not ln.startswith("#")
        ]
    else:
        raise ConfigError(f"--videos {spec}: no such folder or list file")
    by_id: dict[str, Path] = {}
    for path in paths:
        vid = path.stem
        if vid in by_id:
            raise ConfigError(f"--videos {spec}: two files give the video id {vid!r}: {by_id[vid]} and {path}")
        by_id[vid] = path
    if not by_id:
        raise ConfigError(f"--videos {spec}: no video files ({', '.join(VIDEO_EXTENSIONS)})")
    return sorted(by_id.items())


def input_problem(path: Path) -> str | None:
    """Why ``path`` cannot be read as a video (a broken link, a link loop, not a regular file,
    unreadable), or None. Nothing is opened but a regular file (a FIFO would block)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"broken symlink (its target {os.readlink(path)} does not exist)"
        return "no such file"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop (following its links never reaches a file)"
        return f"cannot be read ({err.strerror})"
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a FIFO, socket or device"
        return f"not a regular file ({kind})"
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        return f"unreadable ({err.strerror})"
    return None


def read_id_map(path: Path) -> dict[str, str]:
    """File name (without extension) -> output id, for loaders keyed by something else.

    Accepts TGIF-QA question files (tab-separated, header with ``gif_name`` and ``key``: MASN's
    HDF5 keys are the ``key`` column) and plain two-column files ``name id`` (spaces, tabs or
    commas; e.g. MSVD's ``youtube_mapping.txt``, whose ids ``vidN`` are MASN's MSVD keys).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--id-map {path}: no such file")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    header = lines[0].split("\t") if lines else []
    mapping: dict[str, str] = {}
    if "gif_name" in header and "key" in header:
        name_col, key_col = header.index("gif_name"), header.index("key")
        rows = [ln.split("\t") for ln in lines[1:]]
        pairs = [(r[name_col], r[key_col]) for r in rows if len(r) > max(name_col, key_col)]
    else:
        pairs = [tuple(ln.replace(",", " ").split()[:2]) for ln in lines]
    for number, pair in enumerate(pairs, start=1):
        if len(pair) != 2:
            raise ConfigError(f"--id-map {path}: line {number} does not hold a name and an id")
        name, vid = pair
        if mapping.setdefault(name, vid) != vid:
            raise ConfigError(f"--id-map {path}: {name!r} is mapped to both {mapping[name]!r} and {vid!r}")
    return mapping


def merge_id_maps(paths: Sequence[Path]) -> dict[str, str]:
    """One name -> id mapping from several files (e.g. every TGIF-QA question CSV); they must agree."""
    mapping: dict[str, str] = {}
    for path in paths:
        for name, vid in read_id_map(path).items():
            if mapping.setdefault(name, vid) != vid:
                raise ConfigError(f"--id-map {path}: {name!r} is mapped to both {mapping[name]!r} and {vid!r}")
    return mapping


def apply_id_map(videos: list[tuple[str, Path]], mapping: dict[str, str]) -> tuple[list[tuple[str, Path]], int]:
    """Re-key videos by ``mapping``; videos it does not name are left out (their count is returned)."""
    kept = sorted((mapping[vid], path) for vid, path in videos if vid in mapping)
    ids = [vid for vid, _ in kept]
    if len(set(ids)) != len(ids):
        raise ConfigError("--id-map maps two videos to one id")
    return kept, len(videos) - len(kept)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4") from err
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def take_shard(items: Sequence, shard: tuple[int, int]) -> list:
    """Round-robin over the sorted list: shard i takes items i, i+n, i+2n ... (every shard must list
    the same videos)."""
    i, n = shard
    return list(items[i::n])


def add_common_args(
    parser: argparse.ArgumentParser, stores: Sequence[str], default_store: str, default_batch_size: int
) -> None:
    parser.add_argument("--videos", type=Path, required=True, help="folder of videos or a text file of paths")
    parser.add_argument("--out", type=Path, required=True, help="output folder or file (per --store)")
    parser.add_argument(
        "--store",
        choices=list(stores),
        default=default_store,
        help="output layout: npy = one .npy per video, packed = one array + index, hdf5",
    )
    parser.add_argument("--weights", type=Path, default=None, help="model weights (.pth)")
    parser.add_argument("--random-init", action="store_true", help="random weights: tests and demo only")
    parser.add_argument("--seed", type=seed_int, default=0, help="with --random-init: the seed of the random weights")
    only_when(parser, ["--seed"], lambda args: args.random_init, "without --random-init (it seeds the random weights)")
    parser.add_argument(
        "--allow-foreign",
        action="store_true",
        help="write into an --out that holds files this extractor did not write (they are left untouched; "
        "videos whose output name is taken are listed as failures)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help=f"rows per forward pass (default: {default_batch_size}, or the extractor's own rule)")
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=min(4, os.cpu_count() or 1),
        help="decoding processes (0 = decode in the main process)",
    )
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="autocast for the model")
    parser.add_argument(
        "--id-map",
        type=Path,
        action="append",
        default=None,
        help="name -> id file (a TGIF-QA question CSV: gif_name -> key; or two columns); repeat to combine "
        "several (e.g. every Total_*_question.csv); videos not named are skipped",
    )
    parser.add_argument("--shard", default=None,
                        help="i/n: process every n-th video starting at i (0-based); default: from a Slurm array "
                             "and / or torchrun's RANK, WORLD_SIZE, else 0/1 (feat_script/shards.py)")
    parser.add_argument(
        "--exact",
        action="store_true",
        help="run the model as built (no BatchNorm folding, no channels_last): the eager "
        "reference arithmetic, slower on CPU",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


@dataclasses.dataclass
class ExtractorConfig:
    """The settings every extractor has; an extractor's ``Config`` subclass adds its own. The CLI
    fills the fields from the flags of the same names (``--batch-size`` -> ``batch_size``)."""

    weights: Path | None = None  # None: torchvision's cache (feat_script.weights.resolve)
    random_init: bool = False  # random weights drawn from ``seed``: tests and the demo only
    seed: int = 0
    device: str = "auto"
    batch_size: int | None = None  # rows per forward; None: the extractor's default_batch_size
    amp: str = "off"
    exact: bool = False  # run the model as built (no BatchNorm folding, no channels_last)


class Extractor:
    """Subclass and fill in ``load`` / ``build_model`` / ``forward`` (or ``compute``)."""

    Config: type[ExtractorConfig] = ExtractorConfig
    name = "extractor"
    description = ""
    outputs: tuple[str, ...] = ("",)
    stores: tuple[str, ...] = ("npy", "packed", "hdf5")
    default_store = "npy"
    default_batch_size = 32
    batched_input = "frames"
    fast_inference = False  # True: optimise() folds BatchNorm (fx) and uses channels_last unless --exact
    output_dtype = "float32"
    pixel_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std) of uint8 pixels

    def __init__(self, config: ExtractorConfig | None = None) -> None:
        config = self.Config() if config is None else config
        if config.batch_size is None:
            config = dataclasses.replace(config, batch_size=self.default_batch(config))
        self.config = config
        self.weights_path: Path | None = None
        self.memory_format: torch.memory_format | None = None
        self._ready: tuple[torch.nn.Module | None, torch.device] | None = None

    def default_batch(self, config: ExtractorConfig) -> int:
        """Rows per forward when none is given; an extractor whose rows grow with its settings (clips)
        scales it so memory does not."""
        return self.default_batch_size

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        """Extractor-specific flags (their names are the ``Config`` fields they set)."""

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> ExtractorConfig:
        """The CLI's ``Config``: every flag whose name is a field of it."""
        names = {f.name for f in dataclasses.fields(cls.Config)}
        return cls.Config(**{k: v for k, v in vars(args).items() if k in names})

    def resolve_weights(self, name: str) -> Path | None:
        """``config.weights`` (or torchvision's cache, or None with ``random_init``) for the network
        ``feat_script.weights.WEIGHTS[name]``; a missing file is one line naming what to get."""
        return resolve(name, self.config.weights, self.config.random_init)

    def extract(self, video: str | Path) -> dict[str, np.ndarray]:
        """The outputs of one video, from code: ``{key: array}``, the main output under ``self.name``
        (the arrays the CLI stores). The model is built on first use and kept; ``release`` frees it.
        Raises DecodeError for a video that cannot be used."""
        return self.features(self.load(Path(video)))

    def features(self, item: dict[str, Any]) -> dict[str, np.ndarray]:
        """``compute`` on a loaded item with this extractor's model (see ``extract``)."""
        model, device = self.ready()
        if model is not None:
            item = as_tensors(item)
        with torch.inference_mode():
            out = self.compute(model, item, device)
        return {key or self.name: value if isinstance(value, np.ndarray) else np.concatenate(list(iter_blocks(value)))
                for key, value in out.items()}

    def ready(self) -> tuple[torch.nn.Module | None, torch.device]:
        """The model, built (with ``random_init``, drawn from ``seed`` on a private copy of torch's CPU
        generator: the caller's random stream is left as it was; one build at a time in the process, and
        a thread asking while another builds it waits for that build), optimised and on
        ``config.device``, once. The process-wide kernel choices are the CLI's (``run``), not set here."""
        if self._ready is None:
            with _BUILD_LOCK:
                if self._ready is None:  # not built meanwhile by another thread
                    self._ready = self._build()
        return self._ready

    def _build(self) -> tuple[torch.nn.Module | None, torch.device]:
        device = resolve_device(self.config.device)
        with torch.random.fork_rng(devices=[]):
            if self.config.random_init:
                torch.manual_seed(self.config.seed)
            model = self.build_model()
        if model is not None:
            model = self.optimise(model.eval()).to(device)
        return model, device

    def release(self) -> None:
        """Drop the model built by ``extract`` (its memory goes back before the next network loads)."""
        self._ready = None

    def sampling(self) -> dict[str, Any]:
        """Sampling and preprocessing parameters recorded in the manifest."""
        return {}

    def row_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-key shape of one row (after the leading T axis), when fixed; used to verify outputs."""
        return {}

    def load(self, video: Path) -> dict[str, np.ndarray]:
        """Decode and preprocess one video (worker process). Raise DecodeError for bad input. Arrays
        reach ``compute`` as torch tensors; with ``pixel_stats``, frames stay uint8 ``[T, ..., 3]``."""
        raise NotImplementedError

    def build_model(self) -> torch.nn.Module | None:
        """The model in eval mode on CPU (the base moves it), or None for model-free extractors."""
        return None

    def model_info(self) -> dict[str, Any]:
        return {}

    def inputs(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows as the workers sent them, on the device -> the model's input: uint8 pixels normalised
        by ``pixel_stats`` (``preprocess.pixels_to_input``), images in the model's memory format
        (plain contiguous as built, so ``--exact`` runs the reference layout)."""
        if self.pixel_stats is not None:
            rows = pixels_to_input(rows, *self.pixel_stats)
        if rows.dim() in (4, 5):
            rows = rows.contiguous(memory_format=self.memory_format or torch.contiguous_format)
        return rows

    def forward(self, model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """One chunk of at most ``--batch-size`` rows, on the device; override to post-process."""
        return model(self.inputs(batch))

    def optimise(self, model: torch.nn.Module) -> torch.nn.Module:
        """For extractors with ``fast_inference`` and unless ``--exact``: fold eval BatchNorm into the
        convolutions (``torch.fx``, so the model becomes a GraphModule without its custom attributes)
        and use channels_last. Outputs move by float rounding only (about 1e-6 relative)."""
        if self.config.exact or not self.fast_inference:
            return model
        from torch.fx.experimental.optimization import fuse

        try:
            model = fuse(model)
        except Exception:  # noqa: BLE001 - a model fx cannot trace simply runs unfused
            pass
        self.memory_format = _memory_format(model)
        return model.to(memory_format=self.memory_format)

    def inference_info(self) -> str:
        if self.config.exact or not self.fast_inference:
            return "exact (eager, as built)"
        return "BatchNorm folded into conv, channels_last"

    def compute(
        self, model: torch.nn.Module | None, item: dict[str, Any], device: torch.device
    ) -> dict[str, np.ndarray]:
        """Default: run ``forward`` over ``item[batched_input]`` (a tensor, or a ``RowStream`` of a long
        video) in chunks of ``batch_size`` rows; output key ``""``. ``run`` does the same over rows
        of several videos at once (``batches_across_videos``)."""
        if model is None:
            return {"": item[self.batched_input]}
        batcher = self.batcher(model, device)
        [(_, out)] = self.add_rows(batcher, None, item) + batcher.finish()
        return {"": out}

    def batches_across_videos(self, model: torch.nn.Module | None) -> bool:
        """Whether ``run`` may fill one forward with rows of several videos: a model, default ``compute``."""
        return model is not None and type(self).compute is Extractor.compute

    def batcher(self, model: torch.nn.Module, device: torch.device, spill: Path | None = None) -> RowBatcher:
        """``forward`` under ``--amp`` over chunks of ``--batch-size`` rows, outputs in float32; a
        long video's outputs wait in a file in ``spill`` (see ``feat_script.batching``)."""
        def run(chunk: torch.Tensor) -> torch.Tensor:
            with self.autocast(device):
                return self.forward(model, chunk).float()

        return RowBatcher(run, self.config.batch_size, device, spill)

    def add_rows(self, batcher: RowBatcher, key: Any, item: dict[str, Any]) -> list[tuple[Any, np.ndarray]]:
        """``batcher.add`` of the item's rows; a video without rows is a ``DecodeError``."""
        try:
            return batcher.add(key, item[self.batched_input])
        except NoRows:
            raise DecodeError(f"no {self.batched_input} could be decoded") from None

    def autocast(self, device: torch.device):
        return autocast(device, self.config.amp)

    def make_store(self, out: Path, kind: str) -> Store:
        shapes = self.row_shapes()
        if kind == "npy":
            return NpyDirStore(out, self.outputs, shapes)
        if kind == "packed":
            return PackedStore(out, self.outputs, shapes, default_kind=self.name)
        if kind == "hdf5":
            return Hdf5Store(out, self.outputs, shapes)
        if kind == "frames":
            return FramesStore(out)
        if kind == "wav":
            return WavStore(out)
        raise ConfigError(f"unknown store {kind}")


def as_tensors(item: dict[str, Any]) -> dict[str, Any]:
    """A loaded item as ``compute`` takes it when there is a model: arrays as torch tensors (shared
    memory across the worker pipe, pinned on CUDA); streams of long videos as they are."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in item.items()}


def _as_is(item: tuple) -> tuple:
    """DataLoader collate: items pass through untouched (one video each)."""
    return item


def _memory_format(model: torch.nn.Module) -> torch.memory_format:
    has_3d = any(isinstance(m, torch.nn.Conv3d) for m in model.modules())
    return torch.channels_last_3d if has_3d else torch.channels_last


class _Decoded(Dataset):
    """Runs ``extractor.load`` in DataLoader workers; errors come back as strings, not exceptions.
    With ``tensors``, arrays become torch tensors (shared memory across the worker pipe, pinned by
    the DataLoader for CUDA); model-free extractors keep numpy for their stores."""

    def __init__(self, extractor: Extractor, videos: list[tuple[str, Path]], tensors: bool = False):
        self.extractor = extractor
        self.videos = videos
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> tuple[int, dict | None, str | None]:
        vid, path = self.videos[i]
        try:
            item = self.extractor.load(path)
            if self.tensors:
                item = as_tensors(item)
            return i, item, None
        except DecodeError as err:
            return i, None, str(err)
        except Exception as err:  # noqa: BLE001 - any bad video is recorded, the run goes on
            return i, None, f"{path}: {type(err).__name__}: {err}"


def _settings(extractor: Extractor, has_model: bool, store: str) -> dict:
    """What decides the numbers in the output: a resumed run must have the same (``check_resume``)."""
    config, weights = extractor.config, extractor.weights_path
    settings = {
        "extractor": extractor.name,
        "store": store,
        "outputs": list(extractor.outputs),
        "row_shapes": {k: list(v) for k, v in extractor.row_shapes().items()},
        "dtype": extractor.output_dtype,
        "model": extractor.model_info(),
        "sampling": extractor.sampling(),
    }
    if has_model:
        settings.update(
            weights={"random_init_seed": config.seed} if weights is None else {"sha256": sha256_file(weights)},
            amp=config.amp,
            inference=extractor.inference_info(),
        )
    return json.loads(json.dumps(settings))


def _manifest_fields(extractor: Extractor, args: argparse.Namespace, settings: dict, status: str,
                     counts: dict) -> dict:
    weights = extractor.weights_path
    return {
        **settings,
        "weights": "random-init" if weights is None else {"path": str(weights), "sha256": sha256_file(weights)},
        "settings": settings,
        "status": status,
        "shard": args.shard,
        "id_map": [str(p) for p in args.id_map or []],
        "counts": counts,
        "kernels": kernel_settings(),
    }


def check_out(out: Path, folder: bool) -> None:
    """Refuse an ``--out`` of the wrong kind or where nothing can be written, before anything is."""
    if out.exists() and out.is_dir() != folder:
        want, got = ("a folder", "a file") if folder else ("a file", "a folder")
        raise ConfigError(f"--out {out}: is {got}; this store writes {want}. Choose another --out")
    places = [out] if folder and out.is_dir() else []
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    for place in [*places, parent]:
        if not place.is_dir():
            raise ConfigError(f"--out {out}: {place} is not a folder. Choose another --out")
        try:
            tempfile.TemporaryFile(dir=place).close()
        except OSError as err:
            raise ConfigError(f"--out {out}: cannot write in {place} ({err.strerror}). Choose a writable --out") \
                from err


def check_ids(videos: list[tuple[str, Path]], outputs: Sequence[str]) -> None:
    """Every video id must name one output of its own: no path separators, no hidden names, no
    output key (an HDF5 group), so that two inputs can never land on one output."""
    for vid, path in videos:
        if not vid or vid.startswith(".") or any(c in vid for c in "/\\\0") or vid in outputs:
            raise ConfigError(f"{path}: video id {vid!r} cannot name an output (empty, hidden, a path or an "
                              f"output key {[k for k in outputs if k]}); rename the file or map it with --id-map")


def check_resume(out: Path, settings: dict, written: set[str]) -> None:
    """Resume only with the settings the existing outputs were made with; else say what differs."""
    if not written:
        return
    manifest = sidecar(out, ".manifest.json")
    try:
        old = json.loads(manifest.read_text())["settings"]
    except FileNotFoundError:
        raise ConfigError(f"{manifest}: missing, so the {len(written)} outputs already in --out {out} cannot be "
                          "checked against this run's settings; choose another --out") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{manifest}: unreadable ({err}); choose another --out") from err
    differ = settings_diff(old, settings)
    if differ:
        raise ConfigError(f"--out {out} was written with other settings ({'; '.join(differ)}); resume with "
                          "the same settings or choose another --out")


def settings_diff(old: Any, new: Any, name: str = "") -> list[str]:
    """``name: old -> new`` for every leaf that differs (dotted names)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for k in sorted(set(old) | set(new))
                for d in settings_diff(old.get(k), new.get(k), f"{name}.{k}" if name else k)]
    return [] if old == new else [f"{name}: {str(old)[:60]} -> {str(new)[:60]}"]


def run(extractor: Extractor, args: argparse.Namespace) -> int:
    """Extract every not-yet-done video of this shard (``args``: the common flags, see
    ``add_common_args``) and return the exit status (``exit_status``): every listed video is written,
    already done, or a failure listed with its reason.

    Before anything is written: the flags, the video ids, ``--out`` (kind, writable), the weights,
    the settings of what ``--out`` already holds and its foreign entries are checked."""
    config = extractor.config
    if config.batch_size < 1:
        raise ConfigError("--batch-size must be >= 1")
    bound_heap_growth()
    videos, unmapped = list_videos(args.videos), 0
    if args.id_map:
        videos, unmapped = apply_id_map(videos, merge_id_maps(args.id_map))
        if not videos:
            raise ConfigError(f"--id-map names none of the videos in {args.videos}")
    check_ids(videos, extractor.outputs)
    args.shard = shard_spec(args.shard)
    videos = take_shard(videos, parse_shard(args.shard))
    check_out(args.out, folder=args.store != "hdf5")
    _choose_kernels(extractor.config.exact)
    model, device = extractor.ready()
    settings = _settings(extractor, model is not None, args.store)
    store = extractor.make_store(args.out, args.store)
    check_resume(args.out, settings, store.ledger.ids())
    foreign, strays = store.foreign()
    if (foreign or strays) and not args.allow_foreign:
        names = [str(p) for p in strays[:3]] + sorted(foreign)[:3]
        raise ConfigError(f"--out {args.out} holds {len(foreign) + len(strays)} entries this extractor did not "
                          f"write (e.g. {', '.join(names)}); nothing was touched. Choose a new --out, or pass "
                          "--allow-foreign to leave them as they are and write beside them")
    todo, refused, already_done = sort_inputs(videos, store.done(), foreign, args.out)
    counts = {"listed_in_shard": len(videos), "already_done": already_done, "not_in_id_map": unmapped,
              "refused_before_decoding": len(refused)}
    write_manifest(args.out, _manifest_fields(extractor, args, settings, "running", counts))
    for vid, path, reason in refused:
        record_failure(args.out, path, vid, reason)
    loader = DataLoader(
        _Decoded(extractor, todo, tensors=model is not None),
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=2 if args.workers else None,
        pin_memory=device.type == "cuda",
        collate_fn=_as_is,
    )

    def write(vid: str, path: Path, payload: dict) -> bool:
        try:
            store.write(vid, payload)
            return True
        except DecodeError as err:
            record_failure(args.out, path, vid, str(err))
            return False
        finally:
            for rows in payload.values():
                if isinstance(rows, Spill):
                    rows.discard()

    batcher = extractor.batcher(model, device, getattr(store, "spill_dir", None)) \
        if extractor.batches_across_videos(model) else None
    failed = 0
    bar = tqdm(total=len(todo), desc=f"{extractor.name} shard {args.shard}", unit="video",
               disable=args.quiet or not todo)
    with torch.inference_mode():
        items = iter(loader)  # the workers fork before the writer thread starts
        with BackgroundWriter(write) as writer:
            for i, item, error in items:
                vid, path = todo[i]
                if error is None:
                    try:
                        if batcher is None:
                            writer.submit(vid, path, extractor.compute(model, item, device))
                        else:
                            for j, out in extractor.add_rows(batcher, i, item):
                                writer.submit(*todo[j], {"": out})
                    except DecodeError as err:
                        error = str(err)
                if error is not None:
                    record_failure(args.out, path, vid, error)
                    failed += 1
                bar.update(1)
                bar.set_postfix(failed=failed)
            for j, out in batcher.finish() if batcher is not None else ():
                writer.submit(*todo[j], {"": out})
    bar.close()
    written, failed = writer.written, failed + writer.failed
    if written + failed != len(todo):
        raise RuntimeError(f"{len(todo)} videos to do, {written} written and {failed} failed: a video was lost")
    store.finalize()
    failed += len(refused)
    counts.update(written=written, failed=failed, done_total=len(store.done()))
    write_manifest(args.out, _manifest_fields(extractor, args, settings, "complete", counts))
    report = record_shard(args.out, args.shard, counts)
    if parse_shard(args.shard)[1] > 1:  # a sharded run reports each shard and, at the last, the whole run
        print(report, flush=True)
    if failed:
        print(f"{failed} of {len(videos)} videos failed ({written} written, {already_done} done before); see "
              f"{sidecar(args.out, '.failures.jsonl')}", file=sys.stderr)
    return exit_status(succeeded=already_done + written, failed=failed)


def sort_inputs(videos: list[tuple[str, Path]], done: set[str], foreign: set[str], out: Path
                ) -> tuple[list[tuple[str, Path]], list[tuple[str, Path, str]], int]:
    """(to extract, refused with their reasons, number already done): each listed video is in exactly
    one. An id whose output name ``--out`` holds for someone else is refused; a done one is kept
    whatever its input is now; an input that cannot be read (``input_problem``) is refused."""
    todo, refused, already_done = [], [], 0
    for vid, path in videos:
        if vid in foreign:
            refused.append((vid, path, f"--out {out} already holds an output for {vid!r} that this extractor "
                                       "did not write (--allow-foreign); left untouched"))
        elif vid in done:
            already_done += 1
        elif (problem := input_problem(path)) is not None:
            refused.append((vid, path, f"{path}: {problem}"))
        else:
            todo.append((vid, path))
    return todo, refused, already_done


EXIT_STATUS = """exit status: 0 when every listed video of the shard is extracted or was already; 1 when some
failed (each is in <out>.failures.jsonl with its reason) and others are done; 2 when none is done, or
on a bad flag or file (one line on stderr, nothing written)."""


def exit_status(succeeded: int, failed: int) -> int:
    """0: no failure; 1: failures beside videos that are done; 2: failures only (see ``EXIT_STATUS``)."""
    if not failed:
        return 0
    return 1 if succeeded else 2


def _choose_kernels(exact: bool) -> None:
    """cuDNN autotuning unless ``--exact`` (which keeps the deterministic default algorithms); TF32 off
    either way: the features are float32 and must match the originals' (TF32 moves them by about
    1e-3). ``--amp`` is the precision knob. No effect on CPU; recorded in the manifest."""
    torch.backends.cudnn.benchmark = not exact
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def build_parser(extractor_cls: type[Extractor]) -> argparse.ArgumentParser:
    """The common flags and the extractor's own."""
    parser = CommandParser(prog=f"extract_{extractor_cls.name}", description=extractor_cls.description,
                           epilog=EXIT_STATUS)
    add_common_args(parser, extractor_cls.stores, extractor_cls.default_store, extractor_cls.default_batch_size)
    extractor_cls.add_args(parser)
    return accept_both_spellings(parser)


def main(extractor_cls: type[Extractor], argv: Sequence[str] | None = None) -> int:
    """The CLI: parse the common and the extractor's flags, build the extractor from its ``Config``,
    then ``run``; config errors exit with status 2."""
    args = build_parser(extractor_cls).parse_command(argv)
    return run_cli(lambda: run(extractor_cls(extractor_cls.config_from_args(args)), args))
