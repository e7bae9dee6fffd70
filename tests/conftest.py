import os

import pytest
import torch

# Keep the suite deterministic and light on a 2-core machine.
torch.set_num_threads(1)
# Deterministic mode also fills memory from torch.empty with NaN, so a buffer that is read
# before it is written (a real bug in hand-written kernels) fails a test instead of
# passing by luck on zeroed pages.
torch.use_deterministic_algorithms(True)
torch.utils.deterministic.fill_uninitialized_memory = True
os.environ.setdefault("MPLBACKEND", "Agg")

SHAKESPEARE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "tinyshakespeare.txt")


@pytest.fixture
def shakespeare_path():
    if not os.path.exists(SHAKESPEARE):
        pytest.skip("tiny Shakespeare is not at ../shared/data (tests that need it are skipped)")
    return SHAKESPEARE
