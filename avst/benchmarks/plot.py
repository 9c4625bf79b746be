"""A PNG per report: per-type accuracy bars of the model beside the prior and the published numbers.

Drawn with Pillow (no plotting library in the dependencies). Missing values (a type without questions,
a published table without per-type numbers) leave a gap.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from avst.data.annotations import MODALITIES, QUESTION_TYPES
from avst.heatmap import save_png
from avst.report import SHORT

COLOURS = ((31, 119, 180), (160, 160, 160), (214, 39, 40), (44, 160, 44), (148, 103, 189))
KEYS = [f"{m}/{t}" for m, t in QUESTION_TYPES] + list(MODALITIES) + ["All"]
LABELS = [f"{SHORT[m]}-{t[:4]}" for m, t in QUESTION_TYPES] + [f"{SHORT[m]}-avg" for m in MODALITIES] + ["All"]


def bar_chart(series: dict[str, dict[str, float | None]], title: str, path: str | Path) -> Path:
    """One group of bars per type/group/All (0-100 %), one bar per series, with a legend."""
    width, height, left, top, bottom = 1200, 480, 50, 60, 60
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 10), title, fill="black")
    plot_h = height - top - bottom
    for pct in range(0, 101, 20):
        y = top + plot_h * (1 - pct / 100)
        draw.line([(left, y), (width - 10, y)], fill=(225, 225, 225))
        draw.text((10, y - 6), f"{pct}%", fill="black")
    slot = (width - left - 10) / len(KEYS)
    bar = slot * 0.8 / max(len(series), 1)
    for k, (key, label) in enumerate(zip(KEYS, LABELS)):
        x0 = left + k * slot + slot * 0.1
        for s, values in enumerate(series.values()):
            v = values.get(key)
            if v is not None:
                draw.rectangle([x0 + s * bar, top + plot_h * (1 - v / 100), x0 + (s + 1) * bar - 1, top + plot_h],
                               fill=COLOURS[s % len(COLOURS)])
        draw.text((x0, top + plot_h + 6), label, fill="black")
    for s, name in enumerate(series):
        x = left + s * 260
        draw.rectangle([x, 32, x + 12, 44], fill=COLOURS[s % len(COLOURS)])
        draw.text((x + 18, 32), name[:40], fill="black")
    return save_png(path, np.asarray(img))
