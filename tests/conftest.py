"""Shared test settings (small thread counts keep the suite fast and repeatable on 2 cores) and fixtures."""
import pytest
import torch

torch.set_num_threads(1)


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
