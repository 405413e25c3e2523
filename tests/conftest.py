import os

import pytest
import torch

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory):
    """One teacher cache for the whole session: each teacher is trained once."""
    return str(tmp_path_factory.mktemp("teachers"))
