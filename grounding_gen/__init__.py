"""Stage-1 audio-visual grounding pretraining for AVST, and its heat maps."""
