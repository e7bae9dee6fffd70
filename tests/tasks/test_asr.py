"""Speech recognition (seqlab/tasks/asr.py, asr_family.py, seqlab transcribe): CTC against a
brute-force sum over paths, greedy collapse and prefix beam search on hand-built cases, the
character LM, WER/CER on hand-computed cases, the model's shapes and masking, a tiny learning
run, save/load/resume, and bad inputs through Python and the command line."""

import itertools
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import seqlab
from seqlab.cli import main
from seqlab.data.speech import SAMPLE_RATE, synthesize
from seqlab.tasks.asr import (ASRConfig, ASRModel, CharNGramLM, collapse, error_rates, greedy_decode,
                              prefix_beam_search, reverse_padded)
from seqlab.testing import one_line_error, snapshot

TINY = dict(preset="cpu-tiny", utterances=8, val_utterances=2, test_utterances=2, max_steps=2, eval_every=2,
            eval_batches=1, batch_size=2, warmup_steps=1, log_every=1)


# --------------------------------------------------------------------------- CTC and decoding


def test_collapse_and_greedy_by_hand():
    b = 0  # blank
    assert collapse([0, 1, 1, 0, 2, 2, 0, 2], b) == [1, 2, 2]  # "-aa-bb-b" -> "abb"
    assert collapse([1, 1, 1], b) == [1] and collapse([0, 0], b) == [] and collapse([], b) == []
    assert collapse([3, 0, 3, 3, 0, 0, 3], b) == [3, 3, 3]
    # greedy takes the argmax per frame, then collapses; each item up to its own length
    path = torch.tensor([[1, 1, 0, 2, 2, 1], [2, 0, 2, 2, 1, 1]])
    lp = F.log_softmax(F.one_hot(path, 3).float() * 5, -1)  # (2, 6, 3)
    assert greedy_decode(lp, torch.tensor([6, 4]), 0) == [[1, 2, 1], [2, 2]]


def _brute_force_ctc(probs: np.ndarray, label: list[int], blank: int) -> float:
    """p(l | x) = sum over every path pi with B(pi) = l of prod_t y_t[pi_t]."""
    T, V = probs.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        if collapse(path, blank) == label:
            total += float(np.prod([probs[t, k] for t, k in enumerate(path)]))
    return total


@pytest.mark.parametrize("label", [[1], [1, 2], [1, 1], [2, 1, 2]])
def test_ctc_loss_is_the_sum_over_paths(label):
    torch.manual_seed(0)
    lp = F.log_softmax(torch.randn(5, 1, 3, dtype=torch.float64), -1)  # (T, B, V)
    p = _brute_force_ctc(lp[:, 0].exp().numpy(), label, 0)
    loss = F.ctc_loss(lp, torch.tensor([label]), torch.tensor([5]), torch.tensor([len(label)]), blank=0,
                      reduction="sum")
    assert math.isclose(float(loss), -math.log(p), rel_tol=1e-9)


def test_beam_equals_greedy_on_a_peaked_case():
    torch.manual_seed(1)
    chars = "ab "
    path = torch.tensor([3, 0, 0, 3, 1, 1, 2, 3, 0, 3, 3, 1])  # blank is 3
    lp = F.log_softmax(F.one_hot(path, 4).double() * 12 + torch.rand(12, 4).double(), -1)  # (T, V), peaked
    greedy = "".join(chars[k] for k in greedy_decode(lp[None], None, 3)[0])
    assert greedy == "ab ab"
    for beam in (1, 4, 16):
        assert prefix_beam_search(lp, chars, 3, beam=beam) == greedy


def test_beam_beats_greedy_on_a_hand_built_case():
    # two frames, symbols (a, blank): y = (0.4, 0.6) each frame. Greedy takes the best path
    # "--" -> "" (p = 0.36); the labelling "a" sums the paths aa, a-, -a: 0.16 + 0.24 + 0.24 = 0.64
    lp = torch.log(torch.tensor([[0.4, 0.6], [0.4, 0.6]], dtype=torch.float64))
    assert greedy_decode(lp[None], None, 1) == [[]]
    assert prefix_beam_search(lp, "a", 1, beam=4) == "a"
    p_a = _brute_force_ctc(lp.exp().numpy(), [0], 1)
    p_empty = _brute_force_ctc(lp.exp().numpy(), [], 1)
    assert math.isclose(p_a, 0.64) and math.isclose(p_empty, 0.36)


def test_lm_fusion_and_bonus():
    lm = CharNGramLM(["cat"] * 5 + ["cab", "cot", "a cat", "the cat"], order=3)
    # the LM is a distribution over the next symbol (characters and the end)
    for prefix in ("", "a c", "zz"):
        assert math.isclose(sum(math.exp(lm.logprob(prefix, c)) for c in lm.symbols), 1.0, rel_tol=1e-9)
    assert lm.score("a cat") > lm.score("a tac")
    # acoustics undecided between t and b at the last frame: the LM chooses "cat"
    chars, V = "abct ", 6  # blank = 5
    frames = [{"c": 0.9}, {"a": 0.9}, {"t": 0.45, "b": 0.5}]
    lp = np.full((3, V), 1e-6)
    for t, f in enumerate(frames):
        for c, p in f.items():
            lp[t, chars.index(c)] = p
        lp[t, 5] = 1 - sum(f.values())
    lp = np.log(lp / lp.sum(1, keepdims=True))
    assert prefix_beam_search(lp, chars, 5, beam=8) == "cab"
    assert prefix_beam_search(lp, chars, 5, beam=8, lm=lm, alpha=1.0) == "cat"
    # a negative insertion bonus makes every character cost: the empty transcript wins
    assert prefix_beam_search(lp, chars, 5, beam=8, beta=-50.0) == ""
    with pytest.raises(ValueError, match="lm texts"):
        CharNGramLM(["", ""])


def test_wer_cer_hand_computed():
    # "the cat sat" -> "the bat sat down": 1 substitution + 1 insertion over 3 words
    r = error_rates(["the cat sat"], ["the bat sat down"])
    assert math.isclose(r["wer"], 2 / 3)
    # characters: c->b (1 sub) + " down" (5 insertions) over 11 characters
    assert math.isclose(r["cer"], 6 / 11)
    # summed over utterances: (0 + 1) / (2 + 2) words
    r = error_rates(["a b", "c d"], ["a b", "c"])
    assert math.isclose(r["wer"], 1 / 4) and math.isclose(r["cer"], 2 / 6)
    assert error_rates(["x y"], [""])["wer"] == 1.0
    with pytest.raises(ValueError, match="references"):
        error_rates([""], ["a"])
    with pytest.raises(ValueError, match="hypotheses"):
        error_rates(["a"], ["a", "b"])


# --------------------------------------------------------------------------- the model


def test_model_shapes_and_masking():
    torch.manual_seed(0)
    m = ASRModel(ASRConfig(vocab_size=7, n_mels=12, conv_channels=8, hidden_size=6, num_layers=2, dropout=0.0))
    x = torch.randn(3, 21, 12)
    lengths = torch.tensor([21, 13, 5])
    lp, n = m(x, lengths)
    assert lp.shape == (3, 11, 7) and n.tolist() == [11, 7, 3]
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3, 11))
    # what lies beyond an item's length changes nothing of its outputs (both directions)
    y = x.clone()
    y[1, 13:] = 100.0
    y[2, 5:] = -3.0
    lp2, _ = m(y, lengths)
    assert torch.allclose(lp[1, :7], lp2[1, :7], atol=1e-6) and torch.allclose(lp[2, :3], lp2[2, :3], atol=1e-6)
    # and an item alone gives what it gives in the padded batch
    alone, _ = m(x[1:2, :13])
    assert torch.allclose(alone[0], lp[1, :7], atol=1e-6)
    x_rev = reverse_padded(x, lengths)
    assert torch.equal(x_rev[1, :13], x[1, :13].flip(0)) and torch.equal(x_rev[1, 13:], x[1, 13:])
    for bad, match in [(torch.randn(2, 5), "features"), (torch.randn(1, 5, 3), "mel bands"),
                       (torch.full((1, 4, 12), float("nan")), "finite")]:
        with pytest.raises(ValueError, match=match):
            m(bad)
    with pytest.raises(ValueError, match="lengths"):
        m(x, torch.tensor([22, 1, 1]))
    for kw, match in [(dict(cell="rnn"), "cell"), (dict(kernel_size=4), "odd"), (dict(stride=0), "stride")]:
        with pytest.raises(ValueError, match=match):
            ASRConfig(**kw)
    assert ASRModel(ASRConfig(cell="lstm", conv_channels=4, hidden_size=3, n_mels=12))(x)[0].shape == (3, 11, 29)


def test_tiny_learning_on_speech():
    """A small model on 4 utterances: the CTC loss falls well below its start, and greedy
    decoding moves from nothing to most of the characters."""
    from seqlab.tasks.asr import collate, decode, speech_tokenizer
    from seqlab.tasks.audio import MelConfig, features

    torch.manual_seed(0)
    texts = ["a red cat", "the big dog", "a blue box", "the cat"]
    tok = speech_tokenizer(texts)
    mel = MelConfig(n_mels=32, n_fft=512, hop_length=256)
    rows = [(torch.from_numpy(features(synthesize(t, rate=200), mel)), tok.encode(t), t) for t in texts]
    m = ASRModel(ASRConfig(vocab_size=tok.vocab_size, n_mels=32, n_fft=512, conv_channels=48, hidden_size=48,
                           num_layers=1, dropout=0.0))
    batch = collate(rows)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    first = None
    for step in range(120):
        loss, _ = m.loss(batch)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    hyps = decode(m, tok, [r[0] for r in rows])
    assert error_rates(texts, hyps)["cer"] < 0.3, hyps


# --------------------------------------------------------------------------- family and CLI


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("asr") / "run"
    seqlab.train("asr", out=out, progress=False, **TINY)
    return out


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("wav") / "hello.wav"
    sf.write(str(path), synthesize("the red cat"), SAMPLE_RATE, subtype="PCM_16")
    return path


def test_save_load_resume(tiny_run, tmp_path):
    model, run = seqlab.load(tiny_run)
    assert run.family == "asr" and run.tokenizer.special_tokens == ("<blank>",)
    assert run.tokenizer.vocab_size == model.config.vocab_size and run.extras["lm_texts"]
    assert set(run.tokenizer.chars) >= set("abcdefghiklmnoprstuwy ")
    assert run.data["kind"] == "espeak"
    cut = tmp_path / "cut"
    first = seqlab.train("asr", out=cut, progress=False, **{**TINY, "max_seconds": 1e-9})
    assert first.steps == 1
    result = seqlab.resume(cut, progress=False)
    assert result.steps == 2 and result.stopped == "max_steps"
    ev = seqlab.evaluate(tiny_run, limit=2, beam=2)
    j = ev.to_json()
    assert j["utterances"] == 2 and set(j["decoders"]) == {"greedy", "beam 2", "beam 2 + LM"}
    assert all(0 <= d["cer"] and 0 <= d["wer"] for d in j["decoders"].values())


def test_transcribe_cli_and_python(tiny_run, wav, capsys):
    from seqlab.tasks.asr_family import transcribe

    assert main(["transcribe", str(tiny_run), str(wav), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decoder"] == "greedy" and isinstance(out["text"], str)
    assert main(["transcribe", str(tiny_run), str(wav), "--beam", "3", "--lm"]) == 0
    assert capsys.readouterr().out.endswith("\n")
    assert transcribe(tiny_run, wav, beam=2)["decoder"] == "beam 2"
    assert main(["eval", str(tiny_run), "--limit", "1", "--beam", "2"]) == 0
    assert "WER" in capsys.readouterr().out


def test_transcribe_bad_inputs(tiny_run, wav, tmp_path, capsys):
    before = snapshot(tiny_run)
    err = one_line_error(capsys, ["transcribe", str(tiny_run), str(tmp_path / "none.wav")])
    assert "does not exist" in err
    (tmp_path / "junk.wav").write_bytes(b"RIFF but not really a wave file")
    err = one_line_error(capsys, ["transcribe", str(tiny_run), str(tmp_path / "junk.wav")])
    assert "readable WAV" in err
    sf.write(str(tmp_path / "x.flac"), np.zeros(4000, np.float32), 22050, format="FLAC")
    assert "a WAV file" in one_line_error(capsys, ["transcribe", str(tiny_run), str(tmp_path / "x.flac")])
    sf.write(str(tmp_path / "low.wav"), np.zeros(4000, np.float32), 8000)
    assert "16000 Hz" in one_line_error(capsys, ["transcribe", str(tiny_run), str(tmp_path / "low.wav")])
    assert "--beam" in one_line_error(capsys, ["transcribe", str(tiny_run), str(wav), "--lm"])
    assert "--beam" in one_line_error(capsys, ["transcribe", str(tiny_run), str(wav), "--beam", "-1"])
    assert "no such path" in one_line_error(capsys, ["transcribe", str(tmp_path / "norun"), str(wav)])
    assert snapshot(tiny_run) == before
    with pytest.raises(ValueError, match="16000 Hz"):
        from seqlab.tasks.asr_family import transcribe

        transcribe(tiny_run, tmp_path / "low.wav")


def test_transcribe_refuses_another_family(tmp_path, wav, capsys):
    gpt = tmp_path / "gpt"
    assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "1", "--eval-every", "1", "--eval-batches",
                 "1", "--batch-size", "2", "--block-size", "16", "--quiet", "--out", str(gpt)]) == 0
    capsys.readouterr()
    err = one_line_error(capsys, ["transcribe", str(gpt), str(wav)])
    assert "asr" in err and "'gpt' run" in err


def test_train_on_a_wav_folder_and_bad_folders(tmp_path, capsys):
    folder = tmp_path / "wavs"
    folder.mkdir()
    lines = []
    for i, (text, split) in enumerate([("a red cat", "train"), ("the dog", "train"), ("a big box", "val")]):
        sf.write(str(folder / f"{i}.wav"), synthesize(text), SAMPLE_RATE)
        lines.append(f"{i}.wav\t{text}\t{split}")
    (folder / "transcripts.tsv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["train", "asr", "--wavs", str(folder), "--preset", "cpu-tiny", "--max-steps", "1", "--eval-every",
                 "1", "--eval-batches", "1", "--batch-size", "2", "--quiet", "--out", str(run)]) == 0
    model, rec = seqlab.load(run)
    assert rec.data["kind"] == "wav-folder" and rec.extras["lm_texts"] == ["a red cat", "the dog"]
    capsys.readouterr()
    (folder / "transcripts.tsv").write_text("0.wav\t   \ttrain\n")
    err = one_line_error(capsys, ["train", "asr", "--wavs", str(folder), "--out", str(tmp_path / "r2")])
    assert "non-empty transcript" in err
    (folder / "transcripts.tsv").write_text("9.wav\thello\ttrain\n")
    assert "does not exist" in one_line_error(capsys, ["train", "asr", "--wavs", str(folder),
                                                       "--out", str(tmp_path / "r3")])
    sf.write(str(folder / "low.wav"), np.zeros(800, np.float32), 8000)
    (folder / "transcripts.tsv").write_text("low.wav\thello\ttrain\n")
    assert "16000 Hz" in one_line_error(capsys, ["train", "asr", "--wavs", str(folder),
                                                 "--out", str(tmp_path / "r4")])
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r4").exists()


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.asr_tour import asr
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = ctx.report.section("Speech recognition")
    line = asr(ctx, sec)
    assert line.startswith("asr: held-out sentences and voices, greedy WER")
    kinds = sec.kinds()
    assert {"table", "equation", "code", "figure"} <= set(kinds)
    assert (tmp_path / "asr_ctc.png").is_file() and (tmp_path / "runs" / "asr" / "run.json").is_file()
