"""Preferences (seqlab/llm/preferences.py): the scripted judges, the JSON Lines store (append,
fsync, a torn last line from a kill), and the labelling loop (a person's answers, stop and
resume, a judge writing the same file)."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.llm.preferences import (PreferenceStore, get_judge, label, pair_key, preference_pairs, read_preferences,
                                    read_prompts, sample_pair, sample_pairs, sentiment_score, shown, vowel_score)
from seqlab.llm.tokenizers import fit_tokenizer

CHARS = "abcdefghijklmnopqrstuvwxyz ,.\n"


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    tok = fit_tokenizer("char", CHARS)
    gpt = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=24, d_model=16, num_heads=2, num_layers=1)).eval()
    return gpt, tok


def test_judges_hand_computed():
    assert vowel_score("aeb") == pytest.approx(2 / 3) and vowel_score("123 ,") == 0.0
    assert vowel_score("Oh, xyz") == pytest.approx(1 / 5)
    assert sentiment_score("O sweet love, my grief") == pytest.approx((2 - 1) / 5)
    assert sentiment_score("...") == 0.0
    j = get_judge("vowels")
    assert j.judge("aaa", "bbb") == "a" and j.judge("bcd", "eio") == "b" and j.judge("ab", "ba") == "tie"
    with pytest.raises(ValueError, match="judge: expected one of vowels, sentiment, received 'nope'"):
        get_judge("nope")


def _rec(key, choice="a"):
    return {"key": key, "prompt": "p", "a": "x", "b": "y", "choice": choice}


def test_store_appends_and_reads(tmp_path):
    path = tmp_path / "p.jsonl"
    store = PreferenceStore(path)
    store.append(_rec("k/0"))
    store.append(_rec("k/1", "b"))
    store.append(_rec("k/2", "tie"))
    assert [r["key"] for r in read_preferences(path)] == ["k/0", "k/1", "k/2"]
    assert preference_pairs(read_preferences(path)) == [("p", "x", "y"), ("p", "y", "x")]  # ties say nothing
    assert PreferenceStore(path).answered == {"k/0", "k/1", "k/2"}
    with pytest.raises(ValueError, match="choice"):
        store.append(_rec("k/3", "maybe"))


def test_a_torn_last_line_is_tolerated_and_removed(tmp_path):
    path = tmp_path / "p.jsonl"
    good = json.dumps(_rec("k/0")) + "\n"
    path.write_text(good + '{"key": "k/1", "prompt": "p", "a"')  # a write cut short by a kill
    assert [r["key"] for r in read_preferences(path)] == ["k/0"]
    store = PreferenceStore(path)
    store.append(_rec("k/1", "b"))
    assert path.read_text() == good + json.dumps(_rec("k/1", "b")) + "\n"
    # a bad line that is not the last is an error naming it
    path.write_text(good + "garbage\n" + good)
    with pytest.raises(ValueError, match=r"line 2: expected one JSON object per line"):
        read_preferences(path)
    path.write_text(json.dumps({"key": "k", "prompt": "p", "a": "x"}) + "\n")
    with pytest.raises(ValueError, match="line 1: expected a string field 'b'"):
        read_preferences(path)


def test_a_killed_labeller_loses_no_answer(tmp_path):
    """A labelling process killed (SIGKILL) while it writes: every answer it reported as
    recorded is in the file, and reading the file works."""
    path = tmp_path / "p.jsonl"
    script = textwrap.dedent(f"""
        import sys
        from seqlab.llm.preferences import PreferenceStore
        store = PreferenceStore({str(path)!r})
        for i in range(100000):
            store.append({{"key": f"k/{{i}}", "prompt": "p" * 200, "a": "x" * 500, "b": "y", "choice": "a"}})
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    done = [proc.stdout.readline() for _ in range(20)]
    proc.kill()
    proc.wait()
    assert len([d for d in done if d.strip()]) == 20
    keys = [r["key"] for r in read_preferences(path)]
    assert keys[:20] == [f"k/{i}" for i in range(20)] and keys == [f"k/{i}" for i in range(len(keys))]
    PreferenceStore(path).append(_rec("after"))
    assert read_preferences(path)[-1]["key"] == "after"


def test_pairs_are_the_same_alone_or_in_a_batch(policy):
    gpt, tok = policy
    items = [("the ", pair_key("the ", k)) for k in range(3)] + [("a cat", pair_key("a cat", 0))]
    batch = sample_pairs(gpt, tok, items, length=6)
    alone = [sample_pair(gpt, tok, p, k, length=6) for p, k in items]
    assert batch == alone and all(len(a) == len(b) == 6 for a, b in batch)
    assert batch[0] != batch[1]  # another key, other samples
    assert sample_pairs(gpt, tok, items, length=6, seed=1) != batch


def test_label_records_a_persons_answers_and_resumes(policy, tmp_path):
    gpt, tok = policy
    out = tmp_path / "prefs.jsonl"
    prompts = ["the ", "a cat", "no"]
    answers = iter(["a", "what?", "B", "q"])
    shown_lines = []
    result = label(gpt, tok, prompts, out, ask=lambda q: next(answers), show=shown_lines.append, length=5)
    assert (result.recorded, result.stopped) == (2, "quit")
    recs = read_preferences(out)
    assert [r["choice"] for r in recs] == ["a", "b"] and all(r["labeler"] == "human" for r in recs)
    assert any("please answer" in s for s in shown_lines)
    # the samples shown are those recorded, and those a judge would be given
    assert (recs[0]["a"], recs[0]["b"]) == sample_pair(gpt, tok, "the ", pair_key("the ", 0), length=5)
    # started again: only the third prompt is asked; end of input stops cleanly
    asked = []

    def eof(q):
        asked.append(q)
        raise EOFError

    result = label(gpt, tok, prompts, out, ask=eof, show=lambda s: None, length=5)
    assert (result.recorded, result.already, result.stopped, len(asked)) == (0, 2, "eof", 1)

    def ctrl_c(q):
        raise KeyboardInterrupt

    assert label(gpt, tok, prompts, out, ask=ctrl_c, show=lambda s: None, length=5).stopped == "interrupted"
    result = label(gpt, tok, prompts, out, ask=lambda q: "t", show=lambda s: None, length=5)
    assert (result.recorded, result.stopped) == (1, "done")
    assert [r["choice"] for r in read_preferences(out)] == ["a", "b", "tie"]


def test_a_judge_writes_the_same_file(policy, tmp_path):
    gpt, tok = policy
    out = tmp_path / "j.jsonl"
    result = label(gpt, tok, ["the ", "a cat"], out, judge="vowels", pairs=3, length=8)
    assert result.recorded == 6
    recs = read_preferences(out)
    j = get_judge("vowels")
    for r in recs:
        assert r["labeler"] == "judge:vowels" and r["choice"] == j.judge(r["a"], r["b"])
        assert r["score_a"] == vowel_score(r["a"])
    assert {r["key"] for r in recs} == {pair_key(p, k) for p in ("the ", "a cat") for k in range(3)}
    assert label(gpt, tok, ["the ", "a cat"], out, judge="vowels", pairs=3, length=8).recorded == 0


def test_label_input_errors(policy, tmp_path):
    gpt, tok = policy
    with pytest.raises(ValueError, match="prompt: expected"):
        label(gpt, tok, ["ÄÖ"], tmp_path / "x.jsonl", judge="vowels")
    with pytest.raises(ValueError, match="length: expected at most 23"):
        label(gpt, tok, ["the"], tmp_path / "x.jsonl", judge="vowels", length=24)
    with pytest.raises(ValueError, match="pairs: expected"):
        label(gpt, tok, ["the"], tmp_path / "x.jsonl", judge="vowels", pairs=0)
    assert not (tmp_path / "x.jsonl").exists()
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="at least one non-empty line"):
        read_prompts(tmp_path / "empty.txt")
    (tmp_path / "p.txt").write_text("a\\nb\n\nc\n")
    assert read_prompts(tmp_path / "p.txt") == ["a\nb", "c"]
    assert shown("a\nb\tc") == "a\\nb\\tc"
