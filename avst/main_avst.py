"""AVST (stage 2) and the baseline on MUSIC-AVQA: ``--mode train`` or ``--mode test``.

    python avst/main_avst.py --mode train --audio_dir data/feats/vggish \
        --video_res14x14_dir data/feats/res18_14x14 --pretrained_grounding runs/grounding/checkpoints/best.pt
    python avst/main_avst.py --mode test --run_dir runs/avst [--label_test data/json_update/avqa-test.json]
    python avst/main_avst.py --mode train --model baseline --epochs 20 ...

Training follows the original ``net_grd_avst/main_avst.py``: Adam 1e-4, StepLR(8, 0.1) per epoch, batch 64, loss = QA +
0.5 x matching, the 14 stage-1 tensors (and their ``_pure`` copies) as initialisation, the model chosen
on val accuracy (ties go to the later epoch, engine.selection). ``--batch-size`` is per process (under
torchrun one step sees world size x it). Testing writes the per-type report (JSON, Markdown and one line
per question) into ``<run_dir>/test_<test JSON stem>/`` (the training run's own files stay as they are)
and, with ``--heatmaps N``, PNG overlays of the spatial attention of the first N test questions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from avst.benchmarks.evaluate import TestFile, add_benchmark_args, load_test_files, run_tests, test_label
from avst.data.annotations import load_records
from avst.data.dataset import AVQADataset
from avst.data.features import open_features
from avst.data.vocab import Vocab
from avst.heatmap import frame_path, overlay, save_png
from avst.model.checkpoint import AvstMeta, build_from_checkpoint, new_model
from avst.tasks import AVQATask, model_inputs
from avst.variants import VARIANTS, variant
from engine.checkpoint import load_checkpoint, model_state, save_checkpoint
from engine.cli import (
    CommandParser,
    accept_both_spellings,
    add_engine_args,
    add_gpu_flag,
    check_default_path,
    decay_factor,
    given,
    non_negative_int,
    only_when,
    positive_float,
    positive_int,
)
from engine.device import training_device
from engine.errors import UserError, run_cli
from engine.run import Run, check_start, evaluation_dir, run_dir
from engine.seed import seed_everything
from engine.trainer import Trainer, require_samples

# Output-only options: a --resume may change them (engine.run.HARMLESS lists the engine's own).
HARMLESS = ("model_save_dir", "checkpoint", "weights", "heatmaps", "frames_dir", "label_test")
# Flags of one mode only, refused in the other. The data set's files (--label_*, --vocab-json) may be named in
# both modes, as the original's scripts took them.
TRAINING_ONLY = ("--batch-size", "--epochs", "--lr", "--step-size", "--gamma", "--pretrained-grounding",
                 "--no-grounding-init", "--resume", "--save-every-steps", "--log-interval")
TEST_ONLY = ("--weights", "--heatmaps", "--frames-dir", "--unknown-words", "--ablate")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["train", "test"], default="train")
    p.add_argument("--model", choices=list(VARIANTS), default="avst",
                   help="the registered variant (avst/variants.py): AVST (net_grd_avst) or the AV+Q+TG "
                        "baseline (net_grd_baseline)")
    p.add_argument("--audio_dir", default="data/feats/vggish", help="VGGish [60,128] .npy per video")
    p.add_argument("--video_res14x14_dir", default="data/feats/res18_14x14",
                   help="ResNet-18 14x14 [60,512,14,14] .npy per video")
    p.add_argument("--packed", default=None,
                   help="packed feature store (extract_* --store packed, or scripts/pack_avst_features.py)")
    p.add_argument("--label_train", default="data/json/avqa-train.json")
    p.add_argument("--label_val", default="data/json/avqa-val.json")
    p.add_argument("--label_test", nargs="+", default=["data/json/avqa-test.json"],
                   help="one or more test JSONs: one report each (and a summary), features loaded once")
    p.add_argument("--vocab-json", default="data/json/avqa-train.json",
                   help="train: the ORIGINAL train JSON both vocabularies come from, whatever the split; "
                        "test: read only for weights-only files (the authors' avst.pt), our checkpoints "
                        "carry their vocabulary")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="per process: under torchrun one step sees world size x this many questions")
    p.add_argument("--eval-batch-size", type=positive_int, default=64, help="any size gives the same report")
    p.add_argument("--epochs", type=positive_int, default=None, help="default: the variant's (80 AVST, 20 baseline)")
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--step-size", type=positive_int, default=8, help="StepLR step in epochs")
    p.add_argument("--gamma", type=decay_factor, default=0.1, help="StepLR factor per --step-size epochs")
    p.add_argument("--num_workers", type=non_negative_int, default=None,
                   help="DataLoader workers per process (default: from the CPUs this process may use)")
    p.add_argument("--pretrained-grounding", default="grounding_gen/models_grounding_gen/main_grounding_gen_best.pt",
                   help="stage-1 checkpoint (ours or the authors'); AVST training needs it")
    p.add_argument("--no-grounding-init", action="store_true", help="train AVST from scratch (not the paper)")
    p.add_argument("--model_save_dir", default=None,
                   help="train: also export the selected weights as <dir>/<checkpoint>.pt; "
                        "test: load <dir>/<checkpoint>.pt (e.g. the authors' avst.pt)")
    p.add_argument("--checkpoint", default="avst", help="file stem inside --model_save_dir")
    p.add_argument("--weights", default=None,
                   help="test: checkpoint file (default <run_dir>/checkpoints/best.pt); reports go to "
                        "<run_dir>/test_<test JSON stem>/")
    p.add_argument("--heatmaps", type=non_negative_int, default=0, help="test: PNG overlays for the first N questions")
    p.add_argument("--frames-dir", default=None, help="1-fps frame folders for the heat-map backgrounds")
    p.add_argument("--log-interval", dest="log_interval", type=positive_int, default=Trainer.log_every,
                   help="optimizer steps between train/ scalars, progress-bar updates and non-finite checks")
    add_benchmark_args(p)
    add_engine_args(p, default_seed=1)
    add_gpu_flag(p)
    only_when(p, TRAINING_ONLY, lambda a: a.mode == "train", "with --mode test (training only)")
    only_when(p, TEST_ONLY, lambda a: a.mode == "test", "in training (--mode test only)")
    only_when(p, ["--frames-dir"], lambda a: a.heatmaps > 0, "without --heatmaps N (it gives their backgrounds)")
    only_when(p, ["--checkpoint"], lambda a: a.model_save_dir is not None,
              "without --model_save_dir (it names a file inside it)")
    only_when(p, ["--audio_dir", "--video_res14x14_dir"], lambda a: a.packed is None,
              "with --packed (the features come from the packed store)")
    only_when(p, ["--pretrained-grounding"], lambda a: variant(a.model).grounding_init and not a.no_grounding_init,
              "with --no-grounding-init or a model without stage-1 initialisation")
    return accept_both_spellings(p)


def make_dataset(args, label: str, vocab: Vocab, negatives: bool) -> AVQADataset:
    audio = open_features("audio", args.audio_dir, args.packed)
    visual = open_features("visual", args.video_res14x14_dir, args.packed)
    return AVQADataset(load_records(label), vocab, audio, visual, negatives=negatives, seed=args.seed)


def prepare_training(args, vocab: Vocab) -> tuple[torch.nn.Module, AVQADataset, AVQADataset, list[str]]:
    """Model (with the stage-1 initialisation) and both splits, built and their feature files opened
    before the run folder is touched: a file missing only for validation fails at the start, not after an epoch."""
    from avst.model import init_from_grounding

    model = new_model(AvstMeta(vocab, args.model))
    note = "no stage-1 initialisation"
    if variant(args.model).grounding_init and not args.no_grounding_init:
        if not Path(args.pretrained_grounding).is_file():
            raise FileNotFoundError(
                f"stage-1 checkpoint not found: {args.pretrained_grounding}. Run grounding_gen/main_grd_gen.py "
                "first (or pass --pretrained_grounding), or --no_grounding_init to train without it")
        names = init_from_grounding(model, model_state(load_checkpoint(args.pretrained_grounding)))
        note = f"initialised {len(names)} tensors from {args.pretrained_grounding}"
    train_set = make_dataset(args, args.label_train, vocab, negatives=variant(args.model).negatives)
    val_set = make_dataset(args, args.label_val, vocab, negatives=False)
    require_samples({"train": train_set, "validation": val_set})
    short = train_set.short_videos()  # reads every video's header: a missing or bad file fails here
    val_set.short_videos()
    return model, train_set, val_set, [note, (
        f"train {len(train_set)} questions ({len(train_set.video_list)} videos), val {len(val_set)}; "
        f"videos with fewer than 60 rows (padded with the last row): audio {len(short['audio'])}, "
        f"visual {len(short['visual'])}")]


def train(args, run: Run, vocab: Vocab, device: torch.device, prepared: tuple) -> dict:
    model, train_set, val_set, notes = prepared
    for note in notes:
        run.log(note)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=args.step_size, gamma=args.gamma)
    trainer = Trainer(run, model, optimizer, AVQATask(), device=device, epochs=args.epochs,
                      batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
                      num_workers=args.num_workers, scheduler=scheduler, amp=args.amp,
                      save_every_steps=args.save_every_steps, seed=args.seed,
                      checkpoint_meta=AvstMeta(vocab, args.model).to_dict(), log_every=args.log_interval)
    result = trainer.fit(train_set, val_set)
    run.log(f"selected epoch {result['best_epoch']} (val accuracy {result['best_metric']:.2f} %)")
    if args.model_save_dir and run.is_main:
        best = model_state(load_checkpoint(run.ckpt_dir / "best.pt"))
        out = save_checkpoint(Path(args.model_save_dir) / f"{args.checkpoint}.pt",
                              {"model": best, "meta": AvstMeta(vocab, args.model).to_dict()})
        run.log(f"exported the selected weights to {out}")
    return result


def weights_path(args) -> Path:
    """The checkpoint to test: ``<--model_save_dir>/<--checkpoint>.pt`` or ``--weights``; both only when
    they name the same file."""
    if not args.model_save_dir:
        return Path(args.weights)
    path = Path(args.model_save_dir) / f"{args.checkpoint}.pt"
    if "weights" in given(args) and Path(args.weights).resolve() != path.resolve():
        raise UserError(f"--weights {args.weights}: another checkpoint than --model_save_dir / --checkpoint name "
                        f"({path}); give one of them")
    return path


def prepare_test(args) -> tuple[torch.nn.Module, list[TestFile], Path, Vocab]:
    """The checkpoint's model and every test file's dataset, built before the report folder is touched; the
    vocabulary is the checkpoint's own (``--vocab_json`` only for weights-only files)."""
    path = weights_path(args)
    given_vocab = args.vocab_json if "vocab_json" in given(args) else None
    model, meta = build_from_checkpoint(path, vocab_json=given_vocab, default_vocab_json=args.vocab_json,
                                        answer_file=args.answer_file, model=args.model)
    test_vocab = meta.vocab.with_oov(args.unknown_words)  # the --unknown_words policy, for the test questions only
    return model, load_test_files(args, test_vocab), path, test_vocab


def test(args, run: Run, vocab: Vocab, device: torch.device, prepared: tuple) -> dict:
    """One report per --label_test file (avst.benchmarks.evaluate), heat maps for the first."""
    model, files, path, test_vocab = prepared
    heatmaps = None
    if args.heatmaps and variant(args.model).spatial_attention and run.is_main:
        def heatmaps(model, dataset):
            write_heatmaps(args, run, model, dataset, device)
    return run_tests(args, run, test_vocab, device, model.to(device), path, files, heatmaps)


@torch.no_grad()
def write_heatmaps(args, run: Run, model: torch.nn.Module, dataset: AVQADataset, device: torch.device) -> None:
    """One PNG per (question, sampled frame): the positive branch's audio-guided spatial attention."""
    model.eval()
    out_dir = run.dir / "heatmaps"
    for i in range(min(args.heatmaps, len(dataset))):
        batch = {k: v.unsqueeze(0).to(device) for k, v in dataset[i].items()}
        spatial = model(*model_inputs(batch), return_attention=True)[3]["spatial"].float().cpu().numpy()
        rec = dataset.records[i]
        for t, row in enumerate(dataset.rows):
            frame = None
            if args.frames_dir and (fp := frame_path(args.frames_dir, rec.video_id, int(row))) is not None:
                from PIL import Image

                frame = np.asarray(Image.open(fp).convert("RGB"))
            save_png(out_dir / f"q{rec.question_id}_{rec.video_id}_t{int(row):02d}.png", overlay(frame, spatial[t]))
    run.log(f"heat maps for {min(args.heatmaps, len(dataset))} questions in {out_dir}")


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_command(argv)
    if args.epochs is None:
        args.epochs = variant(args.model).epochs
    seed_everything(args.seed, args.deterministic)
    device = training_device(args.device)
    if args.mode == "test":  # reports go to a subfolder: the training run's config.json stays as it was
        args.weights = args.weights or str(run_dir(args, args.model) / "checkpoints" / "best.pt")
        args.run_dir = str(evaluation_dir(args, args.model, test_label(args.label_test)))
    paths = ("vocab_json", "label_train", "label_val") if args.mode == "train" else ("label_test",)
    for dest in paths:
        check_default_path(args, dest)
    for dest in () if args.packed else ("audio_dir", "video_res14x14_dir"):
        check_default_path(args, dest, "folder")
    check_start(args, args.model, harmless=HARMLESS)
    if args.mode == "train":
        vocab = Vocab.build(args.vocab_json, args.answer_file)
        prepared = prepare_training(args, vocab)
    else:
        prepared = prepare_test(args)
        vocab = prepared[3]
    with Run(args, name=args.model, harmless=HARMLESS) as run:
        run.write_json("vocab.json", vocab.to_dict())
        return (train if args.mode == "train" else test)(args, run, vocab, device, prepared)


def cli(model: str | None = None) -> int:
    """Console entry point (pyproject [project.scripts]); ``model`` presets ``--model`` (main_baseline.py)."""
    return run_cli(main, [*(["--model", model] if model else []), *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(cli())
