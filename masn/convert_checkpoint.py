"""Convert the authors' whole-model MASN pickles into a weights-only checkpoint, without their code.

The released files are ``torch.save(model)`` of ``model.masn.MASN`` (maybe inside
``nn.DataParallel``, maybe with CUDA tensors). Unpickling them normally imports and runs the
original classes. Here a restricted unpickler rebuilds only tensors, storages and plain
containers; every class under ``model.`` or ``torch.nn.`` becomes an inert stand-in that only
stores its attributes, and any other global is refused. The module tree is then walked like
``nn.Module.state_dict`` to recover the original key names.

    python -m masn.convert_checkpoint Action_84.43.pth checkpoints/masn_action.pt --csv_dir data/tgif-qa/question

The pickles hold no vocabulary. ``--csv_dir`` rebuilds it from the task's TGIF-QA Train CSV by the
original rule (and checks its size against the embedding), ``--answer-index`` adds FrameQA's answer
order; with both, ``scripts/answer.py`` can use the converted file.
"""
from __future__ import annotations

import builtins
import collections
import os
import pickle
import types
import warnings
from pathlib import Path

import torch

from engine.checkpoint import CheckpointError, file_kind, save_checkpoint
from engine.cli import CommandParser, accept_both_spellings
from engine.errors import run_cli
from engine.files import sha256_file
from masn.checkpoint import build_from_state, model_args_from_state_dict

_STAND_IN_PREFIXES = ("model.", "torch.nn.modules.", "torch.nn.parallel.", "torch.nn.backends.",
                      "torch.nn.utils.weight_norm.")
_TENSOR_REBUILDERS = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                      "_rebuild_parameter_with_state")


class _StandIn:
    """Inert replacement for a pickled class: keeps the state it is given, runs nothing."""

    qualname = ""
    dump_patches = False

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
            self.__dict__.update(slots or {})
        if isinstance(state, dict):
            self.__dict__.update(state)


class _MethodRef:
    """What ``getattr(obj, name)`` in a pickle (a pickled bound method) becomes."""

    def __init__(self, obj, name) -> None:
        self.obj, self.name = obj, name


_stand_in_classes: dict[str, type] = {}


def _stand_in(qualname: str) -> type:
    if qualname not in _stand_in_classes:
        _stand_in_classes[qualname] = type(qualname.rsplit(".", 1)[-1], (_StandIn,), {"qualname": qualname})
    return _stand_in_classes[qualname]


class RefusedGlobal(pickle.UnpicklingError):
    """A global the restricted unpickler does not load (the message names it)."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = {"__builtin__": "builtins"}.get(module, module)  # protocol-2 pickles use Python 2 names
        qualname = f"{module}.{name}"
        if module == "torch._utils" and name in _TENSOR_REBUILDERS:
            return getattr(torch._utils, name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "builtins" and name in ("set", "frozenset"):
            return getattr(builtins, name)
        if module == "builtins" and name == "getattr":
            return _MethodRef
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype | torch.device):
            return getattr(torch, name)
        if module == "torch" and name in ("device", "Size"):
            return getattr(torch, name)
        if qualname.startswith(_STAND_IN_PREFIXES):
            return _stand_in(qualname)
        raise RefusedGlobal(f"refusing to load global {qualname!r}: only tensors and MASN / "
                                     "torch.nn module containers are allowed in a MASN checkpoint")


restricted_pickle = types.SimpleNamespace(
    __name__="restricted_pickle",
    Unpickler=RestrictedUnpickler,
    load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
)


def _tree_state_dict(module: _StandIn, prefix: str, out: dict[str, torch.Tensor]) -> None:
    state = module.__dict__
    for name, param in state.get("_parameters", {}).items():
        if param is not None:
            out[prefix + name] = param.detach()
    non_persistent = state.get("_non_persistent_buffers_set", set())
    for name, buf in state.get("_buffers", {}).items():
        if buf is not None and name not in non_persistent:
            out[prefix + name] = buf.detach()
    for name, child in state.get("_modules", {}).items():
        if child is not None:
            _tree_state_dict(child, prefix + name + ".", out)


def read_original(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(state_dict with the original key names, attributes of the MASN object) from a pickle."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy files warn that the stand-ins' "source code has changed"
        try:
            obj = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
        except RefusedGlobal as err:  # the restricted unpickler's own refusals say why
            raise ValueError(f"{path}: {err}") from None
        except Exception as err:  # garbage fails in many ways (IndexError, KeyError, EOFError, ...)
            raise ValueError(f"{path}: {file_kind(Path(path))}, not a pickled MASN model or state_dict "
                             f"({type(err).__name__})") from None
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state_dict, attrs = dict(obj), {}
    else:
        if isinstance(obj, _StandIn) and "parallel" in obj.qualname:
            obj = obj.__dict__.get("_modules", {}).get("module", obj)
        if not isinstance(obj, _StandIn) or obj.qualname != "model.masn.MASN":
            what = obj.qualname if isinstance(obj, _StandIn) else type(obj).__name__
            raise ValueError(f"{path}: expected a pickled model.masn.MASN, found {what}")
        state_dict = {}
        _tree_state_dict(obj, "", state_dict)
        attrs = {k: v for k, v in obj.__dict__.items() if isinstance(v, str | int | float)}
    for key in [k for k in state_dict if k.endswith(".weight") and k[:-7] + ".weight_raw" in state_dict]:
        if not torch.equal(state_dict[key], state_dict[key[:-7] + ".weight_raw"]):
            raise ValueError(f"{path}: {key} differs from its weight_raw (saved after a training-mode pass)")
        del state_dict[key]
    return {k: v.contiguous().clone() for k, v in state_dict.items()}, attrs


def vocabulary_meta(task: str | None, dims: dict, csv_dir: Path | None, answer_index: Path | None) -> dict:
    """``MasnMeta`` fields for the vocabulary (from ``csv_dir``) and the answer index, checked against ``dims``."""
    from masn.answer_index import load_answer_index
    from masn.data import tgif

    meta: dict = {}
    if csv_dir is not None:
        if task not in tgif.TASKS:
            raise ValueError(f"--csv_dir rebuilds a TGIF-QA vocabulary and needs the task ({', '.join(tgif.TASKS)}); "
                             f"got {task!r}: pass --task")
        train = tgif.csv_path(Path(csv_dir), task, "train")
        vocab = tgif.build_vocabulary(tgif.read_csv(train, task), task)
        if len(vocab) != dims["vocab_size"]:
            raise ValueError(f"{train}: gives a vocabulary of {len(vocab)} rows (pad and UNK included), the "
                             f"checkpoint's embedding has {dims['vocab_size']}: not the CSV the model was trained on")
        meta["vocab_words"] = vocab.words
    if answer_index is not None:
        answers = load_answer_index(Path(answer_index))
        if len(answers) != dims["answer_vocab_size"]:
            raise ValueError(f"{answer_index}: {len(answers)} answers, the checkpoint's classifier has "
                             f"{dims['answer_vocab_size']}")
        meta["answers"] = answers
    return meta


def convert(src: str | os.PathLike, out: str | os.PathLike, task: str | None = None,
            csv_dir: Path | None = None, answer_index: Path | None = None) -> dict:
    """Write our checkpoint for the pickle ``src``; returns its ``meta``."""
    from masn.model import TASKS

    state_dict, attrs = read_original(src)
    try:
        dims = model_args_from_state_dict(state_dict)
    except ValueError as err:
        raise ValueError(f"{src}: {err}") from None
    task = task or attrs.get("task")
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    stored = {"q_max_length": attrs.get("q_max_len", 20), "task": task, "source": str(src),
              "source_sha256": sha256_file(src), **vocabulary_meta(task, dims, csv_dir, answer_index)}
    model, meta = build_from_state(state_dict, stored, str(src))
    save_checkpoint(out, {"model": model.state_dict(), "meta": meta.to_dict(), "args": {}})
    return meta.to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("official", help="the authors' .pth (torch.save of the whole model)")
    parser.add_argument("out", help="our checkpoint (.pt), loadable with torch.load(weights_only=True)")
    parser.add_argument("--task", choices=["Count", "Action", "Trans", "FrameQA", "MS-QA"],
                        help="recorded in meta when the pickle does not say (it does after a forward pass)")
    parser.add_argument("--csv-dir", type=Path, default=None,
                        help="TGIF-QA question folder: rebuild and store the word vocabulary (Train CSV of the task)")
    parser.add_argument("--answer-index", type=Path, default=None,
                        help="FrameQA answer order (JSON, see masn/answer_index.py) to store with the weights")
    args = accept_both_spellings(parser).parse_command(argv)
    try:
        meta = convert(args.official, args.out, args.task, args.csv_dir, args.answer_index)
    except ValueError as err:  # the converter's own checks; CheckpointError is a UserError already
        raise CheckpointError(str(err)) from None
    print(f"wrote {args.out}: task={meta['task']} vocab_size={meta['vocab_size']} "
          f"answer_vocab_size={meta['answer_vocab_size']} v_max_length={meta['v_max_length']}"
          + ("" if meta.get("vocab_words") else " (no vocabulary: pass --csv_dir to use it with scripts/answer.py)"))
    return 0


def cli() -> int:
    """Console entry point (pyproject [project.scripts])."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
