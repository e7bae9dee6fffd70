"""``seqlab plot RUN [RUN ...] --png``: the curves of several runs from their metrics.jsonl."""

import re

import pytest

import seqlab
from seqlab.cli import main
from seqlab.viz.curves import plot_runs, read_metrics


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    small = dict(preset="cpu-tiny", block_size=16, batch_size=4, max_steps=6, eval_every=3, eval_batches=1,
                 log_every=2, progress=False)
    return [seqlab.train(cell, out=root / cell, **small).run_dir for cell in ("lstm", "gru")]


def test_plot_compares_runs_and_prints_their_best_values(two_runs, tmp_path, capsys):
    png = tmp_path / "curves.png"
    assert main(["plot", *map(str, two_runs), "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert png.read_bytes().startswith(b"\x89PNG")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["run", "family", "last"]
    assert lines[1].split()[:3] == ["lstm", "charlm", "6"] and lines[2].split()[:3] == ["gru", "charlm", "6"]
    best = min(r["loss"] for r in read_metrics(two_runs[0]).records if r["split"] == "val")
    assert f"{best:.4f}" in lines[1]
    assert lines[-1] == f"wrote {png}"


def test_plot_draws_one_line_per_run_and_split(two_runs, tmp_path, monkeypatch):
    import seqlab.viz.plots as plots

    captured, original = {}, plots.save_png

    def keep(fig, path):
        captured["fig"] = fig
        return original(fig, path)

    monkeypatch.setattr(plots, "save_png", keep)
    plot_runs(two_runs, tmp_path / "c.png", split="both", metric="loss")
    labels = [line.get_label() for line in captured["fig"].axes[0].lines]
    assert labels == ["lstm (charlm, val)", "lstm (charlm, train)", "gru (charlm, val)", "gru (charlm, train)"]


def test_a_torn_last_line_is_skipped_but_a_corrupt_middle_line_is_refused(two_runs, tmp_path):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(two_runs[0], run)
    metrics = run / "metrics.jsonl"
    good = metrics.read_text()
    metrics.write_text(good + '{"step": 7, "spl')
    assert len(read_metrics(run).records) == len(good.splitlines())
    metrics.write_text('{"step": 1\n' + good)
    with pytest.raises(ValueError, match=r"metrics file .*: expected one JSON object per line, received line 1"):
        read_metrics(run)


@pytest.mark.parametrize("argv, message", [
    (["plot", "NOPE"], r"run: expected a run directory \(holding run.json and metrics.jsonl\), received 'NOPE' "
                       r"\(no such path\)"),
    (["plot", "RUN", "--metric", "accuracy"], r"metric: expected a metric the runs recorded \(.*loss.*\), received "
                                              r"'accuracy' with no val or train record"),
    (["plot", "RUN", "--split", "test"], r"argument --split: invalid choice"),
    (["plot", "RUN", "--png", "NODIR/c.png"], r"png: expected a file in an existing folder, received 'NODIR/c.png'"),
    (["plot", "RUN", "--png", "."], r"png: expected a file name, received '.' \(a folder\)"),
    (["plot", "EMPTY"], r"run: expected a run directory holding metrics.jsonl, received '.*', which holds none"),
    (["plot"], r"the following arguments are required: RUN_DIR"),
])
def test_bad_input_is_one_line_and_exit_status_2(two_runs, tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "EMPTY").mkdir()
    argv = [str(two_runs[0]) if a == "RUN" else a for a in argv]
    try:
        status = main(argv)
    except SystemExit as e:  # argparse's own errors
        status = e.code
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "Traceback" not in err, err
    assert re.search(message, err), err
    assert not (tmp_path / "curves.png").exists()
