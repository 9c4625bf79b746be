"""The files users download for MUSIC-AVQA, v2.0 and -R, recognised by git blob id (and size).

Blob ids and sizes are read from ``git ls-tree -r -l HEAD`` of the authors' repositories (snapshots of
GeWu-Lab/MUSIC-AVQA cc88095 2022-12-30, DragonLiu1995/MUSIC-AVQA-v2.0 7db4f54 2025-06-26,
reml-group/MUSIC-AVQA-R d9bed99 2024-05-21, AIM-SKKU/QA-TIGER f40bd02 2025-05-19). Large blobs were
absent from the snapshots, so their size is unknown (None); the blob id alone identifies them, since it
hashes the size too. A file's blob id is ``sha1(b"blob <size>\\0" + content)`` (``git hash-object``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

GEWU, V2, R, TIGER = (
    "GeWu-Lab/MUSIC-AVQA",
    "DragonLiu1995/MUSIC-AVQA-v2.0",
    "reml-group/MUSIC-AVQA-R",
    "AIM-SKKU/QA-TIGER",
)


@dataclass(frozen=True)
class KnownFile:
    key: str  # the key published.py uses for this file's benchmark split
    label: str  # what reports print, e.g. "json_update test"
    blob: str  # git blob id
    size: int | None  # bytes; None where the snapshot lacked the blob
    questions: int | None  # records in the file (measured, or from the authors' log)
    sources: tuple[str, ...]  # "<repo>:<path>" where the authors publish it
    note: str = ""  # printed as a warning whenever the file is used

    def describe(self) -> str:
        count = f", {self.questions:,} questions" if self.questions else ""
        return f"{self.label}{count}"


KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile(
        "music-avqa/train",
        "MUSIC-AVQA original train",
        "d1da1c6da7ea5a523b93d0dc73444f3b69967528",
        None,
        32087,
        (f"{GEWU}:data/json/avqa-train.json",),
    ),
    KnownFile(
        "music-avqa/val",
        "MUSIC-AVQA original val",
        "682bca7ad3a09969995ac9fe5d6378145e92797f",
        1249258,
        4595,
        (f"{GEWU}:data/json/avqa-val.json",),
        "27 duplicated question ids with conflicting answers (json_update fixes them)",
    ),
    KnownFile(
        "music-avqa/test",
        "MUSIC-AVQA original test",
        "835b8b552ce71548a04bfb50806d619f94bd5947",
        2494644,
        9185,
        (f"{GEWU}:data/json/avqa-test.json",),
        "55 duplicated question ids with conflicting answers, each scored twice (json_update fixes them)",
    ),
    KnownFile(
        "music-avqa/train_fake",
        "MUSIC-AVQA original train (synthetic videos)",
        "96c434d376af93f317e4604a04db587d4422ab10",
        1690341,
        6233,
        (f"{GEWU}:data/json/avqa-train_fake.json",),
    ),
    KnownFile(
        "music-avqa/train_real",
        "MUSIC-AVQA original train (real videos)",
        "404f1e83e06c42c8b7875279f9788536e4ac3d9f",
        None,
        None,
        (f"{GEWU}:data/json/avqa-train_real.json",),
    ),
    KnownFile(
        "music-avqa/val_real",
        "MUSIC-AVQA original val (real videos)",
        "3551fddbfe19b30a9584ab011636068f344f54e1",
        987464,
        3698,
        (f"{GEWU}:data/json/avqa-val_real.json",),
    ),
    KnownFile(
        "music-avqa/val_fake",
        "MUSIC-AVQA original val (synthetic videos)",
        "c6524b10130b77957fef57c44134f8c478a799be",
        243412,
        897,
        (f"{GEWU}:data/json/avqa-val_fake.json",),
    ),
    KnownFile(
        "music-avqa/test_real",
        "MUSIC-AVQA original test (real videos)",
        "42b93144f1db772bb54aa6fa8e3ad51fec764c91",
        1974404,
        7402,
        (f"{GEWU}:data/json/avqa-test_real.json",),
    ),
    KnownFile(
        "music-avqa/test_fake",
        "MUSIC-AVQA original test (synthetic videos)",
        "2e67fddad4c7c864267c6a7cb44b3fa22d98f48b",
        483498,
        1783,
        (f"{GEWU}:data/json/avqa-test_fake.json",),
    ),
    KnownFile(
        "music-avqa-update/train",
        "json_update train",
        "dfb9233f598bb27ce6d2783ca377131a6ae2be2c",
        None,
        None,
        (f"{GEWU}:data/json_update/avqa-train.json", f"{TIGER}:data/annots/music_avqa/music_avqa_train.json"),
    ),
    KnownFile(
        "music-avqa-update/val",
        "json_update val",
        "dcda27ddfd5de55e8e5723b5ffe5b40d35efeabc",
        1241698,
        4568,
        (f"{GEWU}:data/json_update/avqa-val.json", f"{TIGER}:data/annots/music_avqa/music_avqa_val.json"),
    ),
    KnownFile(
        "music-avqa-update/test",
        "json_update test",
        "84e8b4579b1bd62e5bf0b5e1e6545a3e68b39f88",
        2479019,
        9129,
        (f"{GEWU}:data/json_update/avqa-test.json", f"{TIGER}:data/annots/music_avqa/music_avqa_test.json"),
    ),
    KnownFile(
        "music-avqa/answers",
        "MUSIC-AVQA answer order (QA-TIGER answer2idx.json)",
        "044946504558197da8d9d8073a2fbba3f01e07cf",
        963,
        None,
        (f"{TIGER}:data/annots/music_avqa/answer2idx.json",),
    ),
    KnownFile(
        "v2-balance/train",
        "MUSIC-AVQA v2.0 balance train (full)",
        "5b5ef1934f4f538a2ea15aa853ba34bfe52ff29a",
        None,
        None,
        (f"{V2}:data/balance_full_set/train_balance.json", f"{TIGER}:data/annots/music_avqa_v2/train_balance.json"),
    ),
    KnownFile(
        "v2-balance/train",
        "MUSIC-AVQA v2.0 balance train (QA-TIGER's split without its val)",
        "fce92b7be3c86406acd4782f708cf9069d2dea31",
        None,
        None,
        (f"{TIGER}:data/annots/music_avqa_v2/balance_train.json",),
    ),
    KnownFile(
        "v2-balance/val",
        "MUSIC-AVQA v2.0 balance val (QA-TIGER's split)",
        "2abbe6bd5fc240a7ddd3e0075fffc68a7dffe848",
        2235904,
        5346,
        (f"{TIGER}:data/annots/music_avqa_v2/balance_valid.json",),
    ),
    KnownFile(
        "v2-balance/test",
        "MUSIC-AVQA v2.0 balance test",
        "b78957e2ea85d6e932ef220aacd94d9a4b41a852",
        2889309,
        10819,
        (f"{V2}:data/balance_full_set/test_balance.json", f"{TIGER}:data/annots/music_avqa_v2/test_balance.json"),
    ),
    KnownFile(
        "v2-bias/train",
        "MUSIC-AVQA v2.0 bias train (full)",
        "fd92f964a630e4f321a1ab56b3641757791ab6e8",
        None,
        None,
        (f"{V2}:data/bias_set/train_bias.json", f"{TIGER}:data/annots/music_avqa_v2/train_bias.json"),
    ),
    KnownFile(
        "v2-bias/train",
        "MUSIC-AVQA v2.0 bias train (QA-TIGER's split without its val)",
        "22b37bf43d6deee82e517efc6945e1a3e28fc6f6",
        None,
        None,
        (f"{TIGER}:data/annots/music_avqa_v2/bias_train.json",),
    ),
    KnownFile(
        "v2-bias/val",
        "MUSIC-AVQA v2.0 bias val (QA-TIGER's split)",
        "312a783af6c9b0dd0eb406ebac09f2046a6b5458",
        1889510,
        None,
        (f"{TIGER}:data/annots/music_avqa_v2/bias_valid.json",),
    ),
    KnownFile(
        "v2-bias/test",
        "MUSIC-AVQA v2.0 bias test",
        "b53e69bf83d061fa90b3c54e5e4c5d87cc5f32c8",
        2464700,
        None,
        (f"{V2}:data/bias_set/test_bias.json", f"{TIGER}:data/annots/music_avqa_v2/test_bias.json"),
    ),
    KnownFile(
        "v2/answers",
        "MUSIC-AVQA v2.0 answer order (QA-TIGER answer2idx.json, 42 incl. 'ten')",
        "b3628e3e45c2cf7e38ac435ff87ecf311d3e70f4",
        963,
        None,
        (f"{TIGER}:data/annots/music_avqa_v2/answer2idx.json",),
    ),
    KnownFile(
        "r/headtail",
        "MUSIC-AVQA-R test (head+tail)",
        "35ab0599d288e54f391bae511ca099a0f73f2467",
        None,
        211572,
        (f"{R}:dataset/MUSIC-AVQA-R/avqa-test-headtail.json",),
    ),
    KnownFile(
        "r/head",
        "MUSIC-AVQA-R test head",
        "387be11979f25e7a90dce5b6e5d8012f43adaefb",
        None,
        None,
        (f"{R}:dataset/MUSIC-AVQA-R/avqa-test-head.json",),
    ),
    KnownFile(
        "r/tail",
        "MUSIC-AVQA-R test tail",
        "19e426a64257efdf6a13d870d2465f39cc54f0aa",
        None,
        None,
        (f"{R}:dataset/MUSIC-AVQA-R/avqa-test-tail.json",),
    ),
    KnownFile(
        "r/headtail",
        "MUSIC-AVQA-R test (head+tail), QA-TIGER's copy",
        "429b74234105882f8f3d63a4fa8969fdaebe4f78",
        None,
        None,
        (f"{TIGER}:data/annots/music_avqa_r/avqa-test-headtail.json",),
        "differs from reml-group's file (another blob); its counts may differ",
    ),
    KnownFile(
        "r/head",
        "MUSIC-AVQA-R test head, QA-TIGER's copy",
        "773c361fce18981662694a14c7adf91d0e776a97",
        None,
        None,
        (f"{TIGER}:data/annots/music_avqa_r/avqa-test-head.json",),
        "differs from reml-group's file (another blob); its counts may differ",
    ),
    KnownFile(
        "r/tail",
        "MUSIC-AVQA-R test tail, QA-TIGER's copy",
        "33e7907a7ddf2164743accb6bb89f495b5e343a3",
        None,
        None,
        (f"{TIGER}:data/annots/music_avqa_r/avqa-test-tail.json",),
        "differs from reml-group's file (another blob); its counts may differ",
    ),
    KnownFile(
        "r/vocab",
        "MUSIC-AVQA-R question vocabulary (465 words)",
        "8f35f52c30ccd75ab70d797a2fa6ef443657143c",
        10806,
        None,
        (f"{R}:dataset/music-avqa_vocab.json",),
    ),
    KnownFile(
        "ckpt/avst",
        "authors' avst.pt (trained on the original split)",
        "7f37492ee49f98b14019dc5b3167c0d60a8bdffe",
        None,
        None,
        (f"{GEWU}:net_grd_avst/avst_models/avst.pt",),
    ),
    KnownFile(
        "ckpt/avst_update",
        "authors' avst_update.pt (trained on json_update)",
        "5e40389f8ded7458c77221ceba66770c6e9e6436",
        None,
        None,
        (f"{GEWU}:net_grd_avst/avst_models/avst_update.pt",),
    ),
    KnownFile(
        "ckpt/grounding",
        "authors' main_grounding_gen_best.pt (stage 1)",
        "0e43e21049ffefa5f9b53648f695d8f0641c3821",
        None,
        None,
        (f"{GEWU}:grounding_gen/models_grounding_gen/main_grounding_gen_best.pt",),
    ),
)

# (checkpoint key, test key) -> the test file the authors published that checkpoint's number on
PAPER_TEST_OF = {"ckpt/avst": "music-avqa/test", "ckpt/avst_update": "music-avqa-update/test"}

_BY_BLOB = {k.blob: k for k in KNOWN_FILES}
_cache: dict[tuple[str, int, int], str] = {}


def git_blob_id(path: str | Path) -> str:
    """``git hash-object``: sha1 over ``b"blob <size>\\0"`` and the content (streamed, cached per mtime)."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _cache:
        h = hashlib.sha1(b"blob %d\0" % st.st_size)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _cache[key] = h.hexdigest()
    return _cache[key]


def identify(path: str | Path) -> KnownFile | None:
    return _BY_BLOB.get(git_blob_id(path))


def describe(path: str | Path) -> tuple[str, list[str]]:
    """(what the file is, warnings): the known file's name and count, or 'not a known file', plus its note
    and a warning when its name matches a known file whose content it does not have."""
    known = identify(path)
    if known is not None:
        return known.describe(), [f"{Path(path).name}: {known.note}"] if known.note else []
    name = Path(path).name
    twins = [k for k in KNOWN_FILES if any(s.rsplit("/", 1)[-1] == name for s in k.sources)]
    warnings = [
        f"{path}: named like {k.label} ({k.sources[0]}) but its content differs (blob "
        f"{git_blob_id(path)[:12]}, {Path(path).stat().st_size:,} bytes; published "
        f"{k.size if k.size is not None else '?'} bytes): counts and published numbers do not apply"
        for k in twins
    ]
    return "not a known file", warnings


def pairing_warning(checkpoint: KnownFile | None, test: KnownFile | None) -> str | None:
    """A warning when a recognised authors' checkpoint meets a recognised test file it was not published on."""
    if checkpoint is None or test is None or checkpoint.key not in PAPER_TEST_OF:
        return None
    expected = PAPER_TEST_OF[checkpoint.key]
    if test.key == expected:
        return None
    paper = next(k for k in KNOWN_FILES if k.key == expected)
    return (
        f"{checkpoint.label} was published on the {paper.describe()}, not the {test.label}: "
        "its published numbers do not apply here"
    )
