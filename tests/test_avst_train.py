"""AVST / baseline entry points on tiny synthetic data: loss, schedule, train -> test report, errors."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from avst.data.synthetic import make_dataset
from avst.data.vocab import VocabError
from avst.main_avst import main
from avst.tasks import AVQATask
from engine.errors import UserError, run_cli
from engine.schedule import as_epoch_scheduler


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("musicavqa")
    make_dataset(root, seed=1, n_videos=3, n_frame_videos=0, rounds=1)
    return root


def data_args(root):
    return ["--audio_dir", str(root / "feats/vggish"), "--video_res14x14_dir", str(root / "feats/res18_14x14"),
            "--label_train", str(root / "json/avqa-train.json"), "--label_val", str(root / "json/avqa-val.json"),
            "--label_test", str(root / "json/avqa-test.json"), "--vocab_json", str(root / "json/avqa-train.json"),
            "--num_workers", "0", "--quiet"]


def without_vocab_json(args: list[str]) -> list[str]:
    i = args.index("--vocab_json")
    return args[:i] + args[i + 2:]


def test_loss_is_qa_plus_half_the_interleaved_matching_loss():
    torch.manual_seed(0)
    out_qa, posi, nega = torch.randn(3, 5), torch.randn(6, 2), torch.randn(6, 2)

    def model(audio, visual_posi, visual_nega, question):
        return out_qa, posi, nega

    batch = {"audio": torch.zeros(3, 2, 128), "visual_posi": torch.zeros(3, 2, 512, 1, 1),
             "visual_nega": torch.zeros(3, 2, 512, 1, 1), "question": torch.zeros(3, 14, dtype=torch.long),
             "label": torch.tensor([0, 4, 2])}
    loss, stats = AVQATask().training_loss(model, batch)
    rows, targets = [], []
    for i in range(6):  # the original's batch_organize: posi_i, nega_i with labels 1, 0
        rows += [posi[i], nega[i]]
        targets += [1, 0]
    expected = F.cross_entropy(out_qa, batch["label"]) + 0.5 * F.cross_entropy(torch.stack(rows),
                                                                               torch.tensor(targets))
    torch.testing.assert_close(loss, expected)
    assert set(stats) == {"loss_qa", "loss_match"}


def test_step_lr_follows_the_original_epoch_semantics():
    """scheduler.step(epoch) after epoch e (from 1): 1e-4 for epochs 1-8, 1e-5 for 9-16, 1e-6 for 17-24."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    schedule = as_epoch_scheduler(torch.optim.lr_scheduler.StepLR(opt, step_size=8, gamma=0.1))  # as the Trainer
    lrs = []
    for epoch in range(24):
        schedule.epoch_start(epoch)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.epoch_end(epoch, {})
    assert lrs[:8] == pytest.approx([1e-4] * 8)
    assert lrs[8:16] == pytest.approx([1e-5] * 8)
    assert lrs[16:] == pytest.approx([1e-6] * 8)


def test_train_then_test_writes_the_report(demo, tmp_path):
    from grounding_gen.model import GroundingNet

    grounding = tmp_path / "grounding.pt"
    torch.save(GroundingNet().state_dict(), grounding)
    run = tmp_path / "run"
    main(["--mode", "train", *data_args(demo), "--epochs", "1", "--batch-size", "8", "--run_dir", str(run),
          "--pretrained_grounding", str(grounding)])
    assert "initialised 18 tensors" in (run / "log.txt").read_text()
    vocab = json.loads((run / "vocab.json").read_text())
    assert vocab["words"][0] == "<pad>"
    payload = torch.load(run / "checkpoints/best.pt", weights_only=True)
    assert payload["meta"]["vocab"]["answers"] == vocab["answers"]
    tests = json.loads((demo / "json/avqa-test.json").read_text())
    reports = []
    for bs in ("1", "5"):
        report = main(["--mode", "test", *data_args(demo), "--run_dir", str(run), "--eval_batch_size", bs])
        reports.append(report)
    assert reports[0]["overall"] == reports[1]["overall"]
    # the checkpoint's own vocabulary: without --vocab_json, or with one that builds the same; another is refused
    train = json.loads((demo / "json/avqa-train.json").read_text())
    (tmp_path / "other.json").write_text(json.dumps(train[::-1]))
    no_vocab = without_vocab_json(data_args(demo))
    report = main(["--mode", "test", *no_vocab, "--run_dir", str(run)])
    assert report["overall"] == reports[0]["overall"]
    assert json.loads((run / "test_avqa-test" / "vocab.json").read_text())["words"] == vocab["words"]
    with pytest.raises(VocabError, match=r"^--vocab-json .*other\.json: builds .* not the vocabulary .*best\.pt "
                                         r"carries .*; drop --vocab-json"):
        main(["--mode", "test", *no_vocab, "--vocab_json", str(tmp_path / "other.json"), "--run_dir", str(run)])
    with pytest.raises(FileNotFoundError, match="none.json"):
        main(["--mode", "test", *no_vocab, "--vocab_json", str(tmp_path / "none.json"), "--run_dir", str(run)])
    out = run / "test_avqa-test"
    saved = json.loads((out / "test_report.json").read_text())
    assert saved["questions"] == len(tests) and saved["test_file"].endswith("avqa-test.json")
    assert sum(c["count"] for c in saved["types"].values()) == len(tests)
    lines = (out / "test_predictions.tsv").read_text().splitlines()
    assert len(lines) == len(tests) + 1 and lines[1].split("\t")[0] == str(tests[0]["question_id"])
    assert "| All |" in (out / "test_report.md").read_text()


def test_log_interval_reaches_the_trainer(demo, tmp_path, monkeypatch):
    import avst.main_avst

    seen = []

    class Recording(avst.main_avst.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.log_every)

    monkeypatch.setattr(avst.main_avst, "Trainer", Recording)
    main(["--mode", "train", "--model", "baseline", *data_args(demo), "--epochs", "1", "--batch-size", "8",
          "--run_dir", str(tmp_path / "b"), "--log-interval", "3"])
    assert seen == [3]


def test_baseline_trains_without_negatives(demo, tmp_path):
    result = main(["--mode", "train", "--model", "baseline", *data_args(demo), "--epochs", "1",
                   "--batch-size", "8", "--run_dir", str(tmp_path / "b")])
    assert result["best_epoch"] == 1


def test_checkpoint_with_other_vocabulary_is_refused(demo, tmp_path):
    from avst.model import AVST

    bad = tmp_path / "avst.pt"
    torch.save(AVST(vocab_size=93, num_answers=42).state_dict(), bad)
    with pytest.raises(VocabError, match=r"avst\.pt: the model has 93 word rows and 42 answers"):
        main(["--mode", "test", *data_args(demo), "--run_dir", str(tmp_path / "t"), "--weights", str(bad)])


def test_weights_only_file_without_vocab_json_is_one_line(demo, tmp_path, monkeypatch, capsys):
    from avst.model import AVST

    monkeypatch.chdir(tmp_path)  # no data/json/avqa-train.json (the default --vocab_json) here
    bad = tmp_path / "avst.pt"
    torch.save(AVST(vocab_size=93, num_answers=42).state_dict(), bad)
    no_vocab = without_vocab_json(data_args(demo))
    assert run_cli(main, ["--mode", "test", *no_vocab, "--run_dir", str(tmp_path / "t"), "--weights", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "avst.pt: holds weights only, no vocabulary; pass --vocab_json" in err[0]
    assert not (tmp_path / "t").exists()


def test_avst_training_needs_the_stage1_checkpoint(demo, tmp_path):
    with pytest.raises(FileNotFoundError, match="stage-1 checkpoint not found: .*nothere.pt"):
        main(["--mode", "train", *data_args(demo), "--epochs", "1", "--run_dir", str(tmp_path / "r"),
              "--pretrained_grounding", str(tmp_path / "nothere.pt")])
    assert not (tmp_path / "r").exists(), "refused before the run folder is made"


def test_a_refused_run_leaves_the_existing_run_as_it_was(demo, tmp_path):
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    files = {run / "config.json": b'{"lr": 0.0001}', run / "env.json": b"{}", run / "checkpoints/last.pt": b"ckpt"}
    for path, data in files.items():
        path.write_bytes(data)
    with pytest.raises(FileExistsError, match="--resume"):
        main(["--mode", "train", "--model", "baseline", *data_args(demo), "--epochs", "1", "--run_dir", str(run)])
    with pytest.raises(UserError, match=r"--lr 0\.0001 -> 0\.001"):
        main(["--mode", "train", "--model", "baseline", *data_args(demo), "--epochs", "1", "--run_dir", str(run),
              "--resume", "--lr", "0.001"])
    assert {p: p.read_bytes() for p in files} == files


def test_a_feature_file_missing_only_for_validation_fails_before_training(demo, tmp_path):
    records = json.loads((demo / "json/avqa-val.json").read_text())
    records[0]["video_id"] = "ghost"
    (tmp_path / "val.json").write_text(json.dumps(records))
    args = data_args(demo)
    args[args.index("--label_val") + 1] = str(tmp_path / "val.json")
    with pytest.raises(UserError, match="ghost"):
        main(["--mode", "train", "--model", "baseline", *args, "--epochs", "1", "--run_dir", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists(), "found before the first step, with nothing written"


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--epochs", "0"], ["--eval_batch_size", "-1"]])
def test_options_that_leave_nothing_to_train_are_refused(demo, tmp_path, flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--mode", "train", "--model", "baseline", *data_args(demo), "--run_dir", str(tmp_path / "r"), *flag])
    assert exit_.value.code == 2 and "give an integer in [1, inf)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_authors_style_checkpoint_loads_through_model_save_dir(demo, tmp_path):
    """A bare DataParallel state_dict (``module.`` keys), as the released avst.pt, named the original way."""
    from avst.data.vocab import Vocab
    from avst.model import AVST

    vocab = Vocab.build(demo / "json/avqa-train.json")
    model = AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers))
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "avst.pt")
    report = main(["--mode", "test", *data_args(demo), "--run_dir", str(tmp_path / "t"),
                   "--model_save_dir", str(tmp_path), "--checkpoint", "avst"])
    assert report["weights"] == str(tmp_path / "avst.pt")
    assert report["questions"] == len(json.loads((demo / "json/avqa-test.json").read_text()))


def test_packed_store_gives_the_same_report(demo, tmp_path):
    """The demo maps are float16 on disk, so a float16 store holds the same numbers: same predictions."""
    import numpy as np

    from avst.data.features import NpyFeatures
    from avst.data.packing import pack
    from avst.data.vocab import Vocab
    from avst.model import AVST

    vocab = Vocab.build(demo / "json/avqa-train.json")
    torch.manual_seed(3)
    torch.save(AVST(vocab_size=len(vocab.words), num_answers=len(vocab.answers)).state_dict(), tmp_path / "w.pt")
    videos = sorted(p.stem for p in (demo / "feats/vggish").glob("*.npy"))
    pack(videos, {"audio": NpyFeatures(demo / "feats/vggish", "audio"),
                  "visual": NpyFeatures(demo / "feats/res18_14x14", "visual")}, tmp_path / "packed", np.float16)
    common = ["--mode", "test", *data_args(demo), "--weights", str(tmp_path / "w.pt")]
    per_video = main([*common, "--run_dir", str(tmp_path / "a")])
    files = common[:common.index("--audio_dir")] + common[common.index("--label_train"):]  # --packed replaces the dirs
    packed = main([*files, "--run_dir", str(tmp_path / "b"), "--packed", str(tmp_path / "packed")])
    assert per_video["types"] == packed["types"]
    lines = [(tmp_path / d / "test_avqa-test/test_predictions.tsv").read_text() for d in ("a", "b")]
    assert lines[0] == lines[1]
