"""Published numbers for recognised test files: the one table every report and plot reads.

Keys: the ``KnownFile.key`` of the test file; per-type cells use the report's keys ("Audio/Counting",
..., the groups "Audio"/"Visual"/"Audio-Visual" and "All"). Sources:
- AVST original test: Li et al., CVPR 2022, Table (GeWu-Lab/MUSIC-AVQA figs/exp1.png); 6,569/9,185 correct.
- AVST json_update test: GeWu-Lab/MUSIC-AVQA README, figs/exp3.png (2022-11-01), "ST-AVQA"; 6,535/9,129.
- MUSIC-AVQA v2.0: Liu, Dong, Zhang, WACV 2024 (arXiv 2310.06238), AVST trained on bias/balance train and
  tested on bias/balance test; overall accuracy only (as quoted to this project, not re-read from the paper).
- MUSIC-AVQA-R: Ma et al., NeurIPS 2024 (arXiv 2404.12020), AVST average on the head+tail test
  (as quoted to this project, not re-read from the paper).
- MASN: Seo et al., ACL 2021, TGIF-QA (Count MSE, lower is better), MSVD-QA and MSRVTT-QA accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Published:
    test: str  # KnownFile key of the test file (or a MASN benchmark name)
    method: str
    protocol: str  # what it was trained on
    overall: float
    source: str
    types: dict[str, float] = field(default_factory=dict)
    metric: str = "accuracy %"


def _cells(values: list[float]) -> dict[str, float]:
    """Values in the exp1 column order: A-Cnt, A-Cmp, A-Avg, V-Cnt, V-Loc, V-Avg, AV-Ext, AV-Loc, AV-Cnt,
    AV-Cmp, AV-Temp, AV-Avg (the overall is separate)."""
    keys = (
        "Audio/Counting",
        "Audio/Comparative",
        "Audio",
        "Visual/Counting",
        "Visual/Location",
        "Visual",
        "Audio-Visual/Existential",
        "Audio-Visual/Location",
        "Audio-Visual/Counting",
        "Audio-Visual/Comparative",
        "Audio-Visual/Temporal",
        "Audio-Visual",
    )
    return dict(zip(keys, values, strict=True))


PUBLISHED: tuple[Published, ...] = (
    Published(
        "music-avqa/test",
        "AVST",
        "original train",
        71.52,
        "Li et al. CVPR 2022, Table (figs/exp1.png)",
        _cells([78.18, 67.05, 74.06, 71.56, 76.38, 74.00, 81.81, 64.51, 70.80, 66.01, 63.23, 69.54]),
    ),
    Published(
        "music-avqa-update/test",
        "AVST (ST-AVQA)",
        "json_update train",
        71.59,
        "GeWu-Lab/MUSIC-AVQA README, figs/exp3.png (2022-11-01)",
        _cells([77.78, 67.17, 73.87, 73.52, 75.27, 74.40, 82.49, 64.24, 69.88, 64.67, 65.82, 69.53]),
    ),
    Published("v2-bias/test", "AVST", "v2.0 bias train", 73.07, "Liu et al. WACV 2024 (arXiv 2310.06238)"),
    Published("v2-bias/test", "AVST", "v2.0 balance train", 71.92, "Liu et al. WACV 2024 (arXiv 2310.06238)"),
    Published("v2-balance/test", "AVST", "v2.0 bias train", 69.40, "Liu et al. WACV 2024 (arXiv 2310.06238)"),
    Published("v2-balance/test", "AVST", "v2.0 balance train", 71.02, "Liu et al. WACV 2024 (arXiv 2310.06238)"),
    Published("r/headtail", "AVST", "json_update train", 52.80, "Ma et al. NeurIPS 2024 (arXiv 2404.12020), average"),
    Published(
        "tgif-qa/Count", "MASN", "TGIF-QA Count train", 3.75, "Seo et al. ACL 2021", metric="MSE (lower is better)"
    ),
    Published("tgif-qa/Action", "MASN", "TGIF-QA Action train", 84.4, "Seo et al. ACL 2021"),
    Published("tgif-qa/Trans", "MASN", "TGIF-QA Trans train", 87.4, "Seo et al. ACL 2021"),
    Published("tgif-qa/FrameQA", "MASN", "TGIF-QA FrameQA train", 59.5, "Seo et al. ACL 2021"),
    Published("msvd-qa", "MASN", "MSVD-QA train", 38.0, "Seo et al. ACL 2021"),
    Published("msrvtt-qa", "MASN", "MSRVTT-QA train", 35.2, "Seo et al. ACL 2021"),
)


def published_for(test_key: str | None) -> list[Published]:
    return [p for p in PUBLISHED if p.test == test_key]
