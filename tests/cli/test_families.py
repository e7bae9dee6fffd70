"""``seqlab list`` (seqlab/cli/families.py) and the order the registry lists families in."""

import json

from seqlab import runs
from seqlab.cli import main


def test_list_names_every_family_with_its_commands_presets_and_views(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["family"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(runs.families()) <= set(rows)
    assert rows["charlm"]["commands"] == ["rnn", "lstm", "gru"] and rows["charlm"]["default_preset"] == "cpu-small"
    assert "cpu-tiny" in rows["charlm"]["presets"] and rows["charlm"]["also"] == ["sample"]
    assert rows["gpt"]["also"] == ["sample", "attention"] and rows["bert"]["also"] == ["eval", "attention", "fill"]
    assert rows["bert-classifier"] == {**rows["bert-classifier"], "presets": [], "default_preset": None,
                                       "also": ["eval", "classify"]}
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "seqlab train rnn | lstm | gru; presets cpu-tiny, cpu-small*" in out


def test_families_are_listed_in_the_lectures_order(monkeypatch):
    """Whatever order the family files were imported in (a test or a script may import one
    first), the registry lists them section by section, as `seqlab train --help` does."""
    runs.discover()
    # registered in the reverse order
    monkeypatch.setattr(runs, "_FAMILIES", dict(reversed(list(runs._FAMILIES.items()))))
    monkeypatch.setattr(runs, "_COMMANDS", dict(reversed(list(runs._COMMANDS.items()))))
    names = list(runs.families())
    seqlab_names = [n for n in names if type(runs.get_family(n)).__module__.startswith("seqlab.")]
    assert seqlab_names == ["charlm", "rbm", "diffusion", "gan", "vae", "bert", "bert-classifier", "gpt",
                            "gpt-finetune", "icl", "instruct", "reward-model", "dpo", "ppo", "asr", "caption",
                            "control", "forecast", "handwriting", "translate", "tts"]
    assert list(runs.commands())[:4] == ["gru", "lstm", "rnn", "rbm"]  # a family's commands: as registered
    assert runs.families_with("attention") == ["bert", "gpt", "gpt-finetune", "icl"]
    assert runs.families_with("evaluate")[:1] == ["rbm"] and "charlm" in runs.families_with("sample")
