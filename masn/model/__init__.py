"""MASN model modules, one file per module of the original ``model/`` tree."""
from masn.model.masn import MASN, TASKS, make_mask

__all__ = ["MASN", "TASKS", "make_mask"]
