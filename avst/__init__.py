"""AVST (CVPR 2022): spatio-temporal grounding for audio-visual QA on MUSIC-AVQA."""
