"""Backbones shared by the extractors and the models that consume their features."""
