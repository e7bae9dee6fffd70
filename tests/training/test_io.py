"""Atomic file writes (seqlab.training.io) and the PNGs written through them."""

import json
import os

import pytest

import seqlab.training.io as io_mod
from seqlab.training.io import atomic_write_bytes, atomic_write_json, atomic_write_text


def test_atomic_write_text_and_json(tmp_path, monkeypatch):
    f = tmp_path / "a.json"
    atomic_write_json(f, {"x": 1})
    assert json.loads(f.read_text()) == {"x": 1}
    atomic_write_text(f, "new ü")
    assert f.read_text(encoding="utf-8") == "new ü"

    def broken(src, dst):
        raise OSError("replace failed")

    monkeypatch.setattr(io_mod.os, "replace", broken)
    with pytest.raises(OSError, match="replace failed"):
        atomic_write_text(f, "never")
    monkeypatch.undo()
    assert f.read_text(encoding="utf-8") == "new ü"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left
    with pytest.raises(ValueError, match=r"JSON for a.json: expected JSON-serializable values"):
        atomic_write_json(f, {"x": float("nan")})
    with pytest.raises(ValueError, match=r"text: expected a str, received bytes"):
        atomic_write_text(f, b"x")


def test_atomic_write_bytes(tmp_path):
    f = tmp_path / "b.bin"
    assert atomic_write_bytes(f, b"\x00\x01") == f and f.read_bytes() == b"\x00\x01"
    atomic_write_bytes(f, bytearray(b"xyz"))
    assert f.read_bytes() == b"xyz"
    with pytest.raises(ValueError, match=r"data: expected bytes, received str"):
        atomic_write_bytes(f, "text")
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after it)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_umask(mask):
        os.umask(mask)

    yield set_umask
    os.umask(old)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_new_files_get_the_usual_permissions(tmp_path, umask, mask):
    """A checkpoint file, a JSON file and a PNG are all created 0666 & ~umask (as open()
    would), not 0600 as a mkstemp temporary would be."""
    from seqlab.viz.plots import new_figure, save_png

    umask(mask)
    expected = 0o666 & ~mask
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    fig = new_figure()
    fig.add_subplot(1, 1, 1).plot([0, 1], [1, 0])
    save_png(fig, tmp_path / "a.png")
    for name in ("a.json", "a.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == expected, name
    save_png(fig, tmp_path / "a.png")  # replacing keeps the mode too
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == expected


def test_save_png_writes_a_whole_png_or_nothing(tmp_path, monkeypatch):
    from seqlab.viz.plots import new_figure, save_png

    fig = new_figure()
    fig.add_subplot(1, 1, 1).plot([0, 1], [0, 1])
    path = save_png(fig, tmp_path / "plot.png")
    assert path == tmp_path / "plot.png" and path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    before = path.read_bytes()

    def broken(*a, **k):
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError, match="renderer failed"):
        save_png(fig, path)
    assert path.read_bytes() == before  # rendering happens before any file is touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    with pytest.raises(FileNotFoundError, match=r"folder .*missing does not exist"):
        save_png(new_figure(), tmp_path / "missing" / "x.png")
