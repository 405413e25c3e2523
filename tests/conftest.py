import os

import pytest
import torch

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def teacher_cache(tmp_path_factory):
    """One teacher cache for the whole session: each teacher is trained once."""
    return str(tmp_path_factory.mktemp("teachers"))


# The end-to-end files, longest first: `make test` runs the suite on two pytest-xdist workers a file at a time
# (--dist loadfile, so module fixtures are set up once), and starting the longest files first lets both workers
# finish together. Within a file the order is unchanged; a plain `pytest` runs everything in this order too.
LONGEST_FIRST = ("test_sweep.py", "test_study.py", "test_ablation_e2e.py")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # (stable: each file keeps its own order)
