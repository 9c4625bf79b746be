"""Shared test settings: small thread counts keep the suite fast and repeatable on 2 cores, and every
subprocess a test starts (a CLI, tests/engine_toy.py, tests/ddp_writes.py) imports this checkout's
packages, whatever `pip install -e` points at."""
import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
ROOT = str(Path(__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])


@pytest.fixture(scope="session", autouse=True)
def user_cache_folder(tmp_path_factory):
    """Caches a run keeps between runs (``engine.files.cache_home``) go to a folder of this session,
    in this process and the CLIs it starts, not to the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("xdg-cache")
        patch.setenv("XDG_CACHE_HOME", str(folder))
        yield folder


@pytest.fixture
def authors_grounding_checkpoint(tmp_path):
    """(a stage-1 GroundingNet, its weights saved as the authors' ``main_grounding_gen_best.pt``: a state_dict
    with DataParallel's ``module.`` prefix)."""
    from grounding_gen.model import GroundingNet

    torch.manual_seed(2)
    net = GroundingNet()
    path = tmp_path / "main_grounding_gen_best.pt"
    torch.save({"module." + k: v for k, v in net.state_dict().items()}, path)
    return net, path
