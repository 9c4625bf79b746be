"""Stage 1: audio-visual matching ("spatial grounding") pretraining on raw 1-fps frames (original
``grounding_gen/main_grd_gen.py``).

    python grounding_gen/main_grd_gen.py --audio_dir data/feats/vggish --video_dir data/frames \
        --label_train data/json/avqa-train_real.json --resnet_weights checkpoints/resnet18-5c106cde.pth

GroundingNet with a frozen ImageNet ResNet-18 (stride-1 layer4), Adam 1e-4 on everything (the frozen
weights get no gradient), StepLR(8, 0.1) per epoch, 30 epochs, batch 64. As in the original, the
ResNet's BatchNorm layers stay in train mode while frozen, so their running statistics drift during
training (kept so that results match; ``--freeze_bn`` turns it off). Also as in the original, the
"val" set is the train videos unless ``--label_val`` names another file. The selected checkpoint is
``<run_dir>/checkpoints/best.pt``; ``avst/main_avst.py --pretrained_grounding`` takes it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from avst.data.annotations import load_records, video_list
from avst.data.features import open_features
from engine.cli import (
    CommandParser,
    accept_both_spellings,
    add_engine_args,
    add_gpu_flag,
    check_default_path,
    non_negative_int,
    only_when,
    positive_float,
    positive_int,
)
from engine.device import training_device
from engine.errors import run_cli
from engine.run import Run, check_start
from engine.seed import seed_everything
from engine.trainer import Trainer
from grounding_gen.dataset import GroundingDataset
from grounding_gen.tasks import GroundingTask


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio_dir", default="data/feats/vggish")
    p.add_argument("--video_dir", default="data/frames", help="1-fps frame folders, one per video")
    p.add_argument("--packed", default=None, help="packed feature store for the audio")
    p.add_argument("--label_train", default="data/json/avqa-train_real.json", help="its videos are used")
    p.add_argument("--label_val", default=None, help="default: the train videos (as the original)")
    p.add_argument("--resnet-weights", default=None,
                   help="ImageNet ResNet-18 state_dict (torchvision resnet18-5c106cde.pth); without it "
                        "the backbone is random (demo and tests only)")
    p.add_argument("--freeze-bn", action="store_true", help="keep the frozen ResNet's BN in eval mode")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="per process: under torchrun one step sees world size x this many pairs")
    p.add_argument("--epochs", type=positive_int, default=30)
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--num_workers", type=non_negative_int, default=None,
                   help="DataLoader workers per process (default: from the CPUs this process may use)")
    add_engine_args(p, default_seed=1)
    add_gpu_flag(p)
    only_when(p, ["--audio_dir"], lambda a: a.packed is None, "with --packed (the audio comes from the packed store)")
    return accept_both_spellings(p)


class _FrozenBNTask(GroundingTask):
    """Puts the backbone's BN layers in eval mode before each batch (``--freeze_bn``)."""

    def training_loss(self, model, batch):
        getattr(model, "module", model).visual_net.eval()
        return super().training_loss(model, batch)


def main(argv: list[str] | None = None) -> dict:
    from grounding_gen.model import GroundingNet

    args = build_parser().parse_command(argv)
    check_default_path(args, "label_train")
    for dest in ("video_dir", *(() if args.packed else ("audio_dir",))):
        check_default_path(args, dest, "folder")
    seed_everything(args.seed, args.deterministic)
    device = training_device(args.device)
    check_start(args, "grounding")
    if args.resnet_weights and not Path(args.resnet_weights).is_file():
        raise FileNotFoundError(f"--resnet_weights {args.resnet_weights} not found (torchvision's ImageNet "
                                "ResNet-18, https://download.pytorch.org/models/resnet18-5c106cde.pth)")
    audio = open_features("audio", args.audio_dir, args.packed)
    train_videos = video_list(load_records(args.label_train))
    val_videos = video_list(load_records(args.label_val)) if args.label_val else train_videos
    train_set = GroundingDataset(train_videos, audio, args.video_dir, seed=args.seed)
    val_set = GroundingDataset(val_videos, audio, args.video_dir, seed=args.seed + 1)
    for video in dict.fromkeys(train_videos + val_videos):  # every audio file opened before the first step
        audio.num_rows(video)
    model = GroundingNet(visual_weights=args.resnet_weights)
    for p in model.visual_net.parameters():
        p.requires_grad = False
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=8, gamma=0.1)
    task = (_FrozenBNTask if args.freeze_bn else GroundingTask)()
    with Run(args, name="grounding") as run:
        run.log(f"stage 1 on {len(train_videos)} videos ({len(train_set)} pairs), val {len(val_set)} pairs")
        trainer = Trainer(run, model, optimizer, task, device=device, epochs=args.epochs,
                          batch_size=args.batch_size, num_workers=args.num_workers, scheduler=scheduler,
                          amp=args.amp, save_every_steps=args.save_every_steps, seed=args.seed)
        result = trainer.fit(train_set, val_set)
        run.log(f"selected epoch {result['best_epoch']} (val pair accuracy {result['best_metric']:.2f} %); "
                f"weights in {run.ckpt_dir / 'best.pt'}")
        return result


def cli() -> int:
    """Console entry point (pyproject [project.scripts])."""
    return run_cli(main)


if __name__ == "__main__":
    raise SystemExit(cli())
