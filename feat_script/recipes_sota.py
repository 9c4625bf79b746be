"""The feature sets of today's best MUSIC-AVQA models, QA-TIGER (CVPR 2025) and TSPM (ACM MM 2024),
as data: which extractors make each file, under which folder names their loaders read them.

Read from their loaders and scripts (``AIM-SKKU/QA-TIGER`` at f40bd027, ``GeWu-Lab/TSPM`` at 0106ce41;
see docs/features-sota.md). Every stream has T = 60 rows (one per second; QA-TIGER's patch selector
reshapes audio, frames and patches together): VGGish as AVST's recipe, CLIP ViT-L/14@336px
``encode_image`` and timm ViT-L/16-384 with token merging (r = 25 in the first 23 blocks: 14 tokens)
on MUSIC-AVQA's middle-of-each-second frames. TSPM also reads per-question CLIP text features
(``TSPM_TEXT``). This module imports no extractor.
"""
from __future__ import annotations

from feat_script.recipes import AVST_SECONDS, IMAGENET_MEAN, IMAGENET_STD, Recipe, Stream

CLIP_ARCH = "ViT-L-14-336"  # open_clip's name for OpenAI's ViT-L/14@336px
CLIP_DIM = 768  # its image and text embeddings
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's preprocessing
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOME_ARCH = "vit_large_patch16_384"  # timm; weights augreg_in21k_ft_in1k
TOME_R = 25  # tokens merged per block ...
TOME_LAYERS = 23  # ... in the first 23 of 24 blocks: 577 -> 14 tokens
# The patch features' preprocessing: TSPM's script (Resize(int(256 / 224 * 384)) bicubic, CenterCrop(384),
# the model's mean = std = 0.5), or QA-TIGER's script (Resize((384, 384)) bilinear, ImageNet mean / std).
TOME_PREPROCESS = {"tspm": {"resize_ratio": 256 / 224, "mean": (0.5,) * 3, "std": (0.5,) * 3},
                   "qa-tiger": {"resize_ratio": None, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}}

AUDIO = Stream("vggish", {"recipe": "avst", "num_secs": AVST_SECONDS}, "vggish")
QA_TIGER = Recipe(
    "qa-tiger",
    {"audio": AUDIO,
     "frames": Stream("clip", {"seconds": AVST_SECONDS}, "frame_ViT-L14@336px"),
     "patches": Stream("vit-tome", {"seconds": AVST_SECONDS}, "visual_tome14")},
)
TSPM = Recipe(
    "tspm",
    {"audio": AUDIO,
     "frames": Stream("clip", {"seconds": AVST_SECONDS}, "clip_feats/frame_1fps_ViT-L14@336px"),
     "patches": Stream("vit-tome", {"seconds": AVST_SECONDS}, "ToMe_feat/tome14")},
)
TSPM_TEXT = {"question": "clip_feats/qst_ViT-L14@336px", "prompt": "clip_feats/qaPrompt_ViT-L14@336px"}
RECIPES = {r.name: r for r in (QA_TIGER, TSPM)}
