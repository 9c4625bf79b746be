"""Our MUSIC-AVQA tokenisation, vocabularies and labels vs the original ``AVQA_dataset``, on real JSONs.

    python scripts/parity_avst_data.py --original /path/to/MUSIC-AVQA --vocab_json data/json/avqa-train.json \
        --json data/json/avqa-test.json data/json_update/avqa-test.json

The original reads its vocabulary from ``./data/json/avqa-train.json``, so it runs in a scratch folder
where that name points at ``--vocab_json``; its feature loads are replaced by tiny zero arrays (only the
question and label are compared). Prints the number of mismatching records per file; exit 1 if any.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from avst.data.annotations import load_records
from avst.data.vocab import Vocab
from benchkit.originals import original_avqa_dataset
from engine.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", type=Path, required=True, help="checkout of GeWu-Lab/MUSIC-AVQA")
    p.add_argument("--vocab_json", type=Path, required=True)
    p.add_argument("--json", type=Path, nargs="+", required=True)
    args = p.parse_args(argv)
    dataloader_avst = original_avqa_dataset(args.original)
    real_np = dataloader_avst.np
    dataloader_avst.np = types.SimpleNamespace(array=real_np.array,
                                               load=lambda *a, **k: real_np.zeros((60, 1, 1, 1), np.float32))
    vocab = Vocab.build(args.vocab_json)
    scratch = Path(tempfile.mkdtemp(prefix="parity_avst_data_"))
    (scratch / "data/json").mkdir(parents=True)
    (scratch / "data/json/avqa-train.json").symlink_to(args.vocab_json.resolve())
    paths = [path.resolve() for path in args.json]
    cwd = os.getcwd()
    os.chdir(scratch)
    bad_total = 0
    try:
        for path in paths:
            orig = dataloader_avst.AVQA_dataset(str(path), "audio", "visual")
            same_vocab = list(orig.ques_vocab) == list(vocab.words) and list(orig.ans_vocab) == list(vocab.answers)
            bad = 0
            for i, rec in enumerate(load_records(path)):
                item = orig[i]
                bad += (item["question"].tolist() != vocab.encode_question(rec)
                        or int(item["label"]) != vocab.answer_index(rec))
            bad_total += bad + (not same_vocab)
            print(f"{path}: {len(orig)} records, vocabularies identical: {same_vocab}, "
                  f"question/label mismatches: {bad}")
    finally:
        os.chdir(cwd)
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
