"""A small BERT run shared by the tests of the BERT family and of the classifier family
fine-tuned from it (trained once per session, only when a test asks for it)."""

import contextlib
import io

import pytest

from seqlab.cli import main

SMALL = ["--block-size", "32", "--num-layers", "2", "--d-model", "32", "--num-heads", "4", "--batch-size", "8",
         "--eval-batches", "2", "--quiet"]


@pytest.fixture(scope="session")
def bert_run_printed(tmp_path_factory):
    """(run directory, what `seqlab train bert` printed): 40 steps on the embedded text.
    Tests must not change the run."""
    run = tmp_path_factory.mktemp("bert") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "bert", *SMALL, "--max-steps", "40", "--eval-every", "20", "--out", str(run)]) == 0
    return run, printed.getvalue()


@pytest.fixture(scope="session")
def bert_run(bert_run_printed):
    return bert_run_printed[0]
