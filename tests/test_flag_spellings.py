"""One spelling rule for every command's flags (engine/cli.py): the originals' flags as the originals spell
them, ours hyphenated, and every multi-word flag also accepted in its other spelling (``-`` <-> ``_``)."""
from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.cli import other_spelling

ROOT = Path(__file__).resolve().parents[1]
# Every multi-word flag of the originals' argparse calls (MASN-pytorch main*.py; MUSIC-AVQA's net_grd_*,
# grounding_gen and feat_script scripts), spelled as there.
ORIGINAL_FLAGS = {
    "--audio_dir", "--batch-size", "--batch_size", "--change_lr", "--df_dir", "--exp_name", "--feat_dir",
    "--gcn_layers", "--hidden_size", "--label_test", "--label_train", "--label_val", "--log-interval",
    "--lr_list", "--max_epoch", "--max_n_videos", "--model_name", "--model_save_dir", "--n_frame_steps",
    "--num_workers", "--out_dir", "--output_dir", "--q_max_length", "--rnn_layers", "--save_path", "--st_dir",
    "--v_max_length", "--val_ratio", "--vc_dir", "--video_dir", "--video_path", "--video_res14x14_dir",
    "--weight_decay",
}


def _answer_parser() -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location("answer_script", ROOT / "scripts" / "answer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def parsers() -> dict[str, Callable[[], argparse.ArgumentParser]]:
    """Every command's parser, by the command a user types."""
    import avst.data.check
    import avst.main_avst
    import grounding_gen.main_grd_gen
    import grounding_gen.main_grd_gen_vis
    import masn.data.check
    import masn.main
    import webdemo.cli
    from feat_script.base import build_parser as extractor_parser
    from feat_script.registry import EXTRACTORS, extractor_class

    out = {"masn/main.py": masn.main.build_parser, "avst/main_avst.py": avst.main_avst.build_parser,
           "grounding_gen/main_grd_gen.py": grounding_gen.main_grd_gen.build_parser,
           "grounding_gen/main_grd_gen_vis.py": grounding_gen.main_grd_gen_vis.build_parser,
           "scripts/answer.py": _answer_parser, "python -m webdemo": webdemo.cli.build_parser,
           "check_data.py music-avqa": avst.data.check.build_parser}
    for dataset in ("tgif-qa", "msvd-qa", "msrvtt-qa"):
        out[f"check_data.py {dataset}"] = lambda d=dataset: masn.data.check.build_parser(d)
    for name in EXTRACTORS:
        out[f"python -m feat_script {name}"] = lambda n=name: extractor_parser(extractor_class(n))
    return out


PARSERS = parsers()


def values(action: argparse.Action) -> list[str]:
    """A value the action's type and choices accept, as many times as its nargs wants."""
    if action.nargs == 0:
        return []
    if action.choices:
        value = str(next(iter(action.choices)))
    else:
        convert = action.type or str
        value = next(v for v in ("1", "0.5", "x") if _accepts(convert, v))
    return [value] * (action.nargs if isinstance(action.nargs, int) else 1)


def _accepts(convert, text: str) -> bool:
    try:
        convert(text)
    except (ValueError, TypeError, argparse.ArgumentTypeError):
        return False
    return True


def multi_word(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.Action]]:
    return [(flag, a) for a in parser._actions for flag in a.option_strings if other_spelling(flag)]


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_flag_answers_to_both_spellings(command):
    parser = PARSERS[command]()
    required = [x for a in parser._actions if a.required and a.option_strings
                for x in (a.option_strings[0], *values(a))]
    for flag, action in multi_word(parser):
        given = values(action)
        shown = vars(parser.parse_args([*required, flag, *given]))
        other = vars(parser.parse_args([*required, other_spelling(flag), *given]))
        assert other == shown, f"{command}: {other_spelling(flag)} does not act as {flag}"
        assert other_spelling(flag) not in parser.format_usage(), f"{command}: the alias of {flag} is shown"


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_our_flags_are_hyphenated(command):
    underscored = [flag for flag, _ in multi_word(PARSERS[command]()) if "_" in flag and flag not in ORIGINAL_FLAGS]
    assert not underscored, f"{command}: our flags are spelled with hyphens (engine/cli.py): {underscored}"


def test_abbreviations_stay_unambiguous():
    """The originals' parsers took unique prefixes (``--batch 8`` for ``--batch_size``); two spellings of one
    flag must not make them ambiguous."""
    import masn.main

    assert masn.main.build_parser().parse_args(["--batch", "8", "--run", "r"]).batch_size == 8
