"""``python -m feat_script recipe {qa-tiger,tspm} --videos DIR --out ROOT``: every feature file that
QA-TIGER or TSPM reads, under the folder names their loaders use (``feat_script.recipes_sota``).

Each video stream (VGGish, CLIP frames, ToMe patches; T = 60 each) is one run of its extractor with
the engine's batching, resume, shards and manifests, into ``ROOT/<folder>``. ``tspm`` also encodes
every question of ``--annotations`` and its prompt (``--prompts``) with CLIP's text tower into
``ROOT/clip_feats/{qst,qaPrompt}_ViT-L14@336px/<key>.npy`` (1, 768) float32 (see
``feat_script.avqa_questions`` for the text, the prompt and the key). A record whose question or
prompt cannot be made is listed in ``<folder>.failures.jsonl``; records keyed without a question_id
are listed in the manifest. Flags are checked, weights found and annotation files read before
anything is written.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.cli import CommandParser, accept_both_spellings, non_negative_int, only_when, positive_int, seed_int
from engine.errors import run_cli
from feat_script import avqa_questions as qs
from feat_script.base import ConfigError, check_out, check_resume, parse_shard, run, take_shard
from feat_script.extract_clip import Clip
from feat_script.manifest import record_failure, sha256_file, write_manifest
from feat_script.optional import require
from feat_script.recipes import Stream, build
from feat_script.recipes_sota import RECIPES, TOME_PREPROCESS, TSPM_TEXT
from feat_script.shards import shard_spec
from feat_script.stores import NpyDirStore
from feat_script.weights import resolve

TEXT_CHUNK = 4096  # texts encoded per write batch (each forward takes --batch-size of them)
WEIGHT_FLAGS = {"vggish": ("vggish_weights", "vggish"), "clip": ("clip_weights", "clip_vit_l14_336"),
                "vit-tome": ("vit_weights", "vit_large_patch16_384")}


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="python -m feat_script recipe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--videos", type=Path, required=True, help="folder of videos or a text file of paths")
    parser.add_argument("--out", type=Path, required=True,
                        help="feature root: QA-TIGER's data/feats, TSPM's data root (the folders go inside)")
    parser.add_argument("--vggish-weights", type=Path, help="VGGish weights (feat_script.vggish.convert's file)")
    parser.add_argument("--clip-weights", type=Path, help="OpenAI's ViT-L-14-336px.pt")
    parser.add_argument("--vit-weights", type=Path, help="timm vit_large_patch16_384.augreg_in21k_ft_in1k weights")
    parser.add_argument("--random-init", action="store_true", help="random weights: tests and demo only")
    parser.add_argument("--seed", type=seed_int, default=0, help="with --random-init: the seed of the random weights")
    parser.add_argument("--tome-preprocess", choices=sorted(TOME_PREPROCESS), default="tspm",
                        help="patch features' preprocessing: TSPM's script (default) or QA-TIGER's")
    parser.add_argument("--tspm-compat", action="store_true",
                        help="reproduce TSPM's scripts: patch frames 0, 0, 1, ..., 58; raw templ_values characters "
                        "in questions; prompt 'e' for questions matching no template")
    parser.add_argument("--annotations", type=Path, action="append",
                        help="tspm: MUSIC-AVQA question JSON (repeat for train, val, test)")
    parser.add_argument("--prompts", type=Path, help="tspm: JSON object question template -> prompt")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off", help="autocast for the models")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="rows per forward (default: each extractor's)")
    parser.add_argument("--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1),
                        help="decoding processes (0 = decode in the main process)")
    parser.add_argument("--shard", default=None,
                        help="i/n: every n-th video (and question) starting at i (0-based); default: from "
                             "Slurm's SLURM_ARRAY_TASK_* and / or torchrun's RANK, WORLD_SIZE, else 0/1 "
                             "(feat_script/shards.py)")
    parser.add_argument("--allow-foreign", action="store_true",
                        help="write into folders holding files this run did not write (left untouched)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    only_when(parser, ["--seed"], lambda args: args.random_init, "without --random-init (it seeds the random weights)")
    only_when(parser, ["--annotations", "--prompts"], lambda args: args.recipe == "tspm",
              "with a recipe other than tspm (it reads no question files)")
    return accept_both_spellings(parser)


def stream_overrides(stream: Stream, args: argparse.Namespace, extra: Mapping[str, dict] | None = None) -> dict:
    """The extractor settings the recipe's flags give ``stream``, then ``extra[stream.extractor]``
    (from code: the tests' small network configurations)."""
    flag, _ = WEIGHT_FLAGS[stream.extractor]
    overrides = {"weights": getattr(args, flag), "random_init": args.random_init, "seed": args.seed,
                 "device": args.device, "amp": args.amp, "batch_size": args.batch_size}
    if stream.extractor == "vit-tome":
        overrides.update(preprocess=args.tome_preprocess, tspm_compat=args.tspm_compat)
    return {**overrides, **(extra or {}).get(stream.extractor, {})}


def check_args(args: argparse.Namespace) -> None:
    """Everything that can be refused before a file is written."""
    text = args.recipe == "tspm"
    if text and (not args.annotations or args.prompts is None):
        raise ConfigError("recipe tspm needs --annotations FILE (repeatable) and --prompts FILE for its question "
                          "and prompt features")
    args.shard = shard_spec(args.shard)
    parse_shard(args.shard)
    for module in ("open_clip", "timm"):
        require(module)
    for stream in RECIPES[args.recipe].streams.values():
        flag, name = WEIGHT_FLAGS[stream.extractor]
        resolve(name, getattr(args, flag), args.random_init, "--" + flag.replace("_", "-"))
    for stream in RECIPES[args.recipe].streams.values():
        check_out(args.out / stream.output, folder=True)


def question_items(args: argparse.Namespace, table: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """One item per distinct key over every annotation file ({key, question, prompt, source}) and the
    failures ({key, source, reason}); ``source`` is ``file#index``."""
    items: dict[str, dict] = {}
    failures = []
    for path in args.annotations:
        for i, record in enumerate(qs.read_annotations(path)):
            key, own = qs.question_key(record)
            source = f"{path}#{i}"
            try:
                item = {"key": key, "question": qs.question_text(record, args.tspm_compat),
                        "prompt": qs.prompt_text(record, table, args.tspm_compat), "source": source,
                        "video_id": record["video_id"], "question_id": own}
            except qs.QuestionError as err:
                failures.append({"key": key, "source": source, "reason": str(err)})
                continue
            seen = items.setdefault(key, item)
            if (seen["question"], seen["prompt"]) != (item["question"], item["prompt"]):
                failures.append({"key": key, "source": source,
                                 "reason": f"key {key} is also {seen['source']}, with another question or prompt"})
    return list(items.values()), failures


def text_settings(args: argparse.Namespace, field: str, arch: str, table: dict[str, str]) -> dict:
    """What decides the numbers of a text folder: a resumed run must have the same."""
    _, name = WEIGHT_FLAGS["clip"]
    weights = resolve(name, args.clip_weights, args.random_init, "--clip-weights")
    settings = {"extractor": "clip-text", "text": field, "model": f"open_clip {arch} (QuickGELU, OpenAI)",
                "output": "encode_text: end-of-text token after ln_final @ text_projection, not L2-normalised",
                "dtype": "float32", "tspm_compat": args.tspm_compat, "amp": args.amp,
                "weights": {"random_init_seed": args.seed} if weights is None else {"sha256": sha256_file(weights)}}
    if field == "prompt":
        canonical = json.dumps(table, sort_keys=True, ensure_ascii=False).encode()
        settings["prompts_sha256"] = hashlib.sha256(canonical).hexdigest()  # of the table, not the file's bytes
    return settings


def text_stores(args: argparse.Namespace, clip: Clip,
                table: dict[str, str]) -> list[tuple[str, Path, NpyDirStore, dict, set[str]]]:
    """(field, folder, store, settings, foreign keys) of TSPM's two text folders, checked like a video
    stream's --out (writable, same settings to resume, foreign entries only with --allow-foreign)."""
    stores = []
    for field, folder in TSPM_TEXT.items():
        out = args.out / folder
        check_out(out, folder=True)
        store = NpyDirStore(out, ("",), clip.row_shapes())
        settings = json.loads(json.dumps({**text_settings(args, field, clip.config.arch, table),
                                          "row_shapes": clip.row_shapes()}))
        check_resume(out, settings, store.ledger.ids())
        foreign, strays = store.foreign()
        if (foreign or strays) and not args.allow_foreign:
            raise ConfigError(f"--out {out} holds {len(foreign) + len(strays)} entries this run did not write; "
                              "nothing was touched. Choose another --out, or pass --allow-foreign")
        stores.append((field, out, store, settings, foreign))
    return stores


def write_text_features(args: argparse.Namespace, clip: Clip, stores: list, items: list[dict],
                        failures: list[dict]) -> None:
    """TSPM's question and prompt files (keys already written are verified and skipped)."""
    items = take_shard(items, parse_shard(args.shard))
    unkeyed = [{"key": it["key"], "record": it["source"], "video_id": it["video_id"]}
               for it in items if not it["question_id"]]
    for field, out, store, settings, foreign in stores:
        done = store.done()
        todo = [it for it in items if it["key"] not in done and it["key"] not in foreign]
        manifest = {**settings, "settings": settings, "keyed_without_question_id": unkeyed,
                    "counts": {"keys": len(items), "to_write": len(todo), "failed": len(failures),
                               "keyed_without_question_id": len(unkeyed)},
                    "annotations": [str(p) for p in args.annotations], "prompts": str(args.prompts)}
        write_manifest(out, {**manifest, "status": "running"})
        for failure in failures:
            record_failure(out, Path(failure["source"].rsplit("#", 1)[0]), failure["key"],
                           f"{failure['source']}: {failure['reason']}")
        for start in range(0, len(todo), TEXT_CHUNK):
            chunk = todo[start:start + TEXT_CHUNK]
            for item, row in zip(chunk, clip.encode_texts([it[field] for it in chunk])):
                store.write(item["key"], {"": row[None]})
        write_manifest(out, {**manifest, "status": "complete"})
        if failures and not args.quiet:
            print(f"{len(failures)} questions failed; see {out}.failures.jsonl", file=sys.stderr)
    clip.release()


def run_recipe(args: argparse.Namespace, extra: Mapping[str, dict] | None = None) -> int:
    """Write the recipe's files (see the module docstring); ``extra``: see ``stream_overrides``."""
    check_args(args)
    if args.recipe == "tspm":
        frames = RECIPES["tspm"].streams["frames"]
        clip = build(frames, **stream_overrides(frames, args, extra))
        table = qs.read_prompt_table(args.prompts)
        text = question_items(args, table)
        stores = text_stores(args, clip, table)
    for stream in RECIPES[args.recipe].streams.values():
        extractor = build(stream, **stream_overrides(stream, args, extra))
        stream_args = argparse.Namespace(videos=args.videos, out=args.out / stream.output, store="npy",
                                         workers=args.workers, id_map=None, shard=args.shard,
                                         allow_foreign=args.allow_foreign, quiet=args.quiet)
        run(extractor, stream_args)
        extractor.release()
    if args.recipe == "tspm":
        write_text_features(args, clip, stores, *text)
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_command(sys.argv[1:] if argv is None else argv)
    return run_cli(lambda: run_recipe(args))

