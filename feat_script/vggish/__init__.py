"""VGGish in PyTorch: log-mel front end, AVST and standard recipes, PCA post-processing, converter."""
from feat_script.vggish.model import VGGish, load_pca, vggish
from feat_script.vggish.recipes import avst_examples, standard_examples

__all__ = ["VGGish", "avst_examples", "load_pca", "standard_examples", "vggish"]
