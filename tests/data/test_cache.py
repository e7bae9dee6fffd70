"""The cache of generated corpora (seqlab/data/cache.py): where it is, names refused in one
line, a corpus built once and renamed into place whole, a failed build leaving nothing."""

from pathlib import Path

import pytest

from seqlab.data.cache import build_once, cache_dir, cache_root


def test_the_root_follows_seqlab_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("SEQLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "seqlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "seqlab"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", None, 3])
def test_a_cache_name_is_a_plain_folder_name(name):
    with pytest.raises(ValueError, match="cache name: expected a plain folder name"):
        cache_dir(name)


def test_a_corpus_is_built_once_and_appears_whole(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path))
    calls = []

    def build(folder: Path) -> None:
        calls.append(folder)
        assert folder.parent == tmp_path and folder.name != "corpus"  # a temporary folder beside the final one
        (folder / "data.txt").write_text("x")

    first = build_once("corpus", build)
    assert first == tmp_path / "corpus" and (first / "data.txt").read_text() == "x"
    assert build_once("corpus", build) == first and len(calls) == 1  # there: not built again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]  # no temporary folder left


def test_a_failed_build_leaves_nothing_and_is_retried(monkeypatch, tmp_path):
    monkeypatch.setenv("SEQLAB_CACHE", str(tmp_path))

    def broken(folder: Path) -> None:
        (folder / "half.txt").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_once("corpus", broken)
    assert list(tmp_path.iterdir()) == []
    built = build_once("corpus", lambda folder: (folder / "whole.txt").write_text("whole"))
    assert [p.name for p in built.iterdir()] == ["whole.txt"]
