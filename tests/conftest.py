import os
import tempfile

# cuBLAS needs this to run deterministically (set before CUDA initialises; harmless on CPU)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest  # noqa: E402
import torch  # noqa: E402

# Without a GPU, the recurrent layers' Triton kernels (tests/recurrent/test_triton_loops.py) run in
# Triton's interpreter, which has to be chosen before triton is first imported (which
# torch.use_deterministic_algorithms below does)
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Property-based tests (tests/test_properties.py): a few examples per property in `make test`,
# many more in `make test-slow` (HYPOTHESIS_PROFILE=slow). No example database: nothing is
# written into the working tree; a failure prints the example and a @reproduce_failure blob.
_PROPERTY_SETTINGS = dict(deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fast", max_examples=25, **_PROPERTY_SETTINGS)
settings.register_profile("slow", max_examples=1000, **_PROPERTY_SETTINGS)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "fast"))

# Keep the suite deterministic and light on a 2-core machine.
torch.set_num_threads(1)
# Deterministic mode also fills memory from torch.empty with NaN, so a buffer that is read
# before it is written (a real bug in hand-written kernels) fails a test instead of
# passing by luck on zeroed pages.
torch.use_deterministic_algorithms(True, warn_only=True)  # warn, not fail, on CUDA-only gaps
torch.utils.deterministic.fill_uninitialized_memory = True
os.environ.setdefault("MPLBACKEND", "Agg")
# the generative evaluation caches its reference classifier here: not in the user's ~/.cache
os.environ.setdefault("SEQLAB_CACHE", tempfile.mkdtemp(prefix="seqlab-test-cache-"))

SHAKESPEARE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "tinyshakespeare.txt")


@pytest.fixture
def shakespeare_path():
    if not os.path.exists(SHAKESPEARE):
        pytest.skip("tiny Shakespeare is not at ../shared/data (tests that need it are skipped)")
    return SHAKESPEARE


@pytest.fixture
def no_tf32():
    """Full float32 precision on the GPU (the CUDA tests compare against tight tolerances)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="session")
def grey_digits():
    """scikit-learn's 8x8 digits as grey images (1797, 1, 8, 8) in [0, 1], shuffled with seed 0:
    (1500 training images, 297 test images, the test labels)."""
    from seqlab.data.images import load_digits_array

    data, target = load_digits_array()
    x = torch.tensor(data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)  # (1797, 1, 8, 8)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:1500]], x[perm[1500:]], torch.from_numpy(target)[perm[1500:]]

