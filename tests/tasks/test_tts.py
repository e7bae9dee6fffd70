"""Text to speech (seqlab/tasks/tts.py, tts_audio.py, tts_family.py, seqlab speak): the length
regulator and the CTC forced alignment on hand-built cases, the Griffin-Lim round trip, the mel
distance, a tiny learning run, save/load/resume (uniform and CTC durations), and bad inputs
through Python and the command line."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

import seqlab
from seqlab.cli import main
from seqlab.data.speech import SAMPLE_RATE, synthesize
from seqlab.tasks.audio import MelConfig, log_mel
from seqlab.tasks.tts import (TTSConfig, TTSData, TTSModel, char_durations, ctc_forced_align, length_regulate,
                              mel_distance, mel_stats, uniform_durations)
from seqlab.tasks.tts_audio import griffin_lim, write_wav
from seqlab.testing import one_line_error, snapshot

TINY = dict(preset="cpu-tiny", utterances=8, val_utterances=2, test_utterances=2, max_steps=2, eval_every=2,
            eval_batches=1, batch_size=2, warmup_steps=1, log_every=1)


# --------------------------------------------------------------------------- by hand


def test_length_regulator_by_hand():
    h = torch.tensor([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]],
                      [[4.0, 40.0], [5.0, 50.0], [9.0, 90.0]]])  # (B=2, U=3, D=2)
    d = torch.tensor([[2, 0, 1], [1, 3, 7]])
    z, n = length_regulate(h, d, torch.tensor([3, 2]))  # the second item has 2 characters: its 7 is ignored
    assert n.tolist() == [3, 4] and z.shape == (2, 4, 3)
    assert z[0, :3, :2].tolist() == [[1, 10], [1, 10], [3, 30]]
    assert z[0, :3, 2].tolist() == [0.25, 0.75, 0.5]  # (t - s_u + 1/2) / d_u
    assert z[0, 3].abs().sum() == 0  # padding
    assert z[1, :, :2].tolist() == [[4, 40], [5, 50], [5, 50], [5, 50]]
    assert torch.allclose(z[1, :, 2], torch.tensor([0.5, 1 / 6, 0.5, 5 / 6]))
    with pytest.raises(ValueError, match="durations"):
        length_regulate(h, torch.tensor([[1, -1, 1], [1, 1, 1]]))


def _log_probs(frames, V=3):
    """(T', V) log probabilities, each frame sure (0.97) of the symbol given."""
    lp = np.full((len(frames), V), math.log(0.03 / (V - 1)))
    for t, k in enumerate(frames):
        lp[t, k] = math.log(0.97)
    return lp


def test_ctc_forced_alignment_by_hand():
    a, b, blank = 0, 1, 2
    # "ab" over 6 encoder frames: a a - b - -  -> states 1 1 2 3 4 4
    path = ctc_forced_align(_log_probs([a, a, blank, b, blank, blank]), [a, b], blank)
    assert path == [1, 1, 2, 3, 4, 4]
    # blanks count for the character before: a gets 3 encoder frames, b 3; stride 2 -> 6 + 6 feature frames
    assert char_durations(path, 2, 12, 2).tolist() == [6, 6]
    assert char_durations(path, 2, 11, 2).tolist() == [6, 5]  # the last character ends at the last frame
    # leading blanks go to the first character
    path = ctc_forced_align(_log_probs([blank, blank, a, b]), [a, b], blank)
    assert path == [0, 0, 1, 3] and char_durations(path, 2, 4, 1).tolist() == [3, 1]
    # "aa" must pass through a blank between its two a's even where the outputs say "a" everywhere
    path = ctc_forced_align(_log_probs([a, a, a, a]), [a, a], blank)
    assert 2 in path and path[0] == 1 and path[-1] == 3
    with pytest.raises(ValueError, match="at least 3 encoder frames"):
        ctc_forced_align(_log_probs([a, a]), [a, a], blank)
    assert uniform_durations(3, 10).tolist() == [3, 4, 3] and uniform_durations(4, 10).sum() == 10


def test_griffin_lim_round_trip_and_mel_distance(tmp_path):
    audio = synthesize("the red cat", rate=200)
    x = log_mel(audio)  # (T, 80)
    wave = griffin_lim(x, n_iter=16)
    assert wave.dtype == np.float32 and wave.shape == ((x.shape[0] - 1) * 256,)
    assert np.abs(wave).max() <= 0.9 + 1e-6
    back = log_mel(wave)
    assert back.shape == x.shape
    d = mel_distance(back, x, "equal")
    assert d < 1.0, d  # the same sound, up to Griffin-Lim's phase estimate
    assert mel_distance(x, x, "equal") == 0 and mel_distance(x, x) == 0
    other = log_mel(synthesize("a blue dog chased the fish", rate=120))
    assert mel_distance(other, x) > d
    path = write_wav(tmp_path / "x.wav", wave)
    info = sf.info(str(path))
    assert info.samplerate == SAMPLE_RATE == 22050 and info.frames == len(wave) and info.channels == 1
    with pytest.raises(ValueError, match="same number of frames"):
        mel_distance(x[:-1], x, "equal")
    with pytest.raises(ValueError, match="80"):
        griffin_lim(x[:, :40])
    with pytest.raises(ValueError, match="finite"):
        griffin_lim(np.full_like(x, np.nan))


def test_tiny_learning():
    """A small model on 3 sentences with their uniform durations: the loss falls well below its
    start, and the spectrogram it makes for a training sentence is close to eSpeak's."""
    torch.manual_seed(0)
    mel = MelConfig(n_mels=32, n_fft=512, hop_length=256)
    texts = ["a red cat", "the big dog", "a blue box"]
    chars = sorted(set("".join(texts)))
    mels = [log_mel(synthesize(t, rate=220), mel) for t in texts]
    items = [([chars.index(c) for c in t], uniform_durations(len(t), m.shape[0]).tolist(), m, t)
             for t, m in zip(texts, mels)]
    mean, std = mel_stats(mels)
    data = TTSData({"train": items, "val": items[:1]}, mean, std)
    model = TTSModel(TTSConfig(vocab_size=len(chars), n_mels=32, n_fft=512, embed_size=32, hidden_size=32,
                               channels=48, decoder_layers=3))
    model.set_stats(mean, std)
    batch = data.collate(items)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    first = before = None
    for step in range(80):
        loss, metrics = model.loss(batch)
        first = first if first is not None else loss.item()
        if before is None:
            before = mel_distance(model.synthesize(items[0][0], items[0][1]), mels[0], "equal")
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.35 * first, (first, loss.item())
    after = mel_distance(model.synthesize(items[0][0], items[0][1]), mels[0], "equal")
    assert after < 0.5 * before, (before, after)
    pred = model.synthesize(items[0][0])  # predicted durations: near the true length
    assert abs(pred.shape[0] - mels[0].shape[0]) <= 0.3 * mels[0].shape[0]


def test_a_rank_share_of_a_batch_is_the_batch_of_its_rows():
    """Under torchrun each rank takes its rows of the one-process batch; TTSData.shard_batch
    re-pads them to the share's own longest text and mel, exactly as collate of those rows."""
    rng = np.random.default_rng(0)
    items = [([1 + i % 5] * n, [2] * n, rng.normal(size=(f, 4)).astype(np.float32), "x")
             for i, (n, f) in enumerate([(3, 7), (9, 20), (4, 6), (2, 5)])]
    data = TTSData({"train": items, "val": items[:1]}, np.zeros(4, np.float32), np.ones(4, np.float32))
    batch = data.collate(items)
    for rank in (0, 1):
        share = TTSData.shard_batch(batch, rank, 2)
        expected = data.collate(items[2 * rank: 2 * rank + 2])
        assert all(torch.equal(a, b) for a, b in zip(share, expected))
    assert TTSData.shard_batch(batch, 1, 2)[0].shape == (2, 4)  # re-padded: 4 characters, not 9


def test_config_and_model_checks():
    for kw, match in [(dict(kernel_size=4), "odd"), (dict(channels=0), "channels"), (dict(dropout=1.0), "dropout")]:
        with pytest.raises(ValueError, match=match):
            TTSConfig(**kw)
    m = TTSModel(TTSConfig(vocab_size=5, embed_size=4, hidden_size=4, channels=4, decoder_layers=1))
    y, n, log_d = m(torch.tensor([[1, 2, 3], [4, 0, 0]]), torch.tensor([3, 1]), torch.tensor([[2, 1, 1], [3, 9, 9]]))
    assert y.shape == (2, 4, 80) and n.tolist() == [4, 3] and log_d.shape == (2, 3)
    assert y[1, 3].abs().sum() == 0 and log_d[1, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="ids in"):
        m(torch.tensor([[7]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="at least one character"):
        m.synthesize([])


# --------------------------------------------------------------------------- family and CLI


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tts") / "run"
    seqlab.train("tts", out=out, progress=False, **TINY)
    return out


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpt") / "run"
    assert main(["train", "gpt", "--preset", "cpu-tiny", "--max-steps", "1", "--eval-every", "1", "--eval-batches",
                 "1", "--batch-size", "2", "--block-size", "16", "--quiet", "--out", str(out)]) == 0
    return out


def test_save_load_resume(tiny_run, tmp_path):
    model, run = seqlab.load(tiny_run)
    assert run.family == "tts" and run.data["kind"] == "espeak-tts" and run.data["durations"] == "uniform"
    assert run.tokenizer.vocab_size == model.config.vocab_size and set(run.tokenizer.chars) >= set("abcdeht ")
    assert model.mel_mean.abs().sum() > 0  # the corpus's statistics travel with the weights
    fam = seqlab.runs.get_family("tts")
    data = fam.data_from_run(run, {})
    assert torch.allclose(model.mel_mean, data.data.mean)
    durations = json.loads(run.file("durations.json"))
    assert [sum(d) for d in durations["train"]] == [m.shape[0] for m in (r[2] for r in data.data.items["train"])]
    cut = tmp_path / "cut"
    first = seqlab.train("tts", out=cut, progress=False, **{**TINY, "max_seconds": 1e-9})
    assert first.steps == 1
    result = seqlab.resume(cut, progress=False)
    assert result.steps == 2 and result.stopped == "max_steps"
    j = seqlab.evaluate(tiny_run, limit=1, n_iter=2).to_json()
    assert j["sentences"] == 1 and j["metrics"]["mel L1, predicted durations (DTW path)"] > 0


def test_ctc_durations_from_an_asr_run(tmp_path):
    asr = seqlab.train("asr", out=tmp_path / "asr", progress=False, **{**TINY, "max_steps": 1})
    run = seqlab.train("tts", out=tmp_path / "tts", progress=False, asr=str(asr.run_dir), **TINY)
    model, rec = seqlab.load(run.run_dir)
    assert rec.data["durations"] == "ctc" and rec.data["asr"] == str(asr.run_dir.resolve())
    d = json.loads(rec.file("durations.json"))
    data = seqlab.runs.get_family("tts").data_from_run(rec, {})
    for split in ("train", "val"):
        for durs, (ids, _, x, _) in zip(d[split], data.data.items[split]):
            assert len(durs) == len(ids) and sum(durs) == x.shape[0] and min(durs) >= 0
    j = seqlab.evaluate(run.run_dir, limit=1, n_iter=2).to_json()["metrics"]
    assert {"asr WER, our audio", "asr WER, eSpeak audio", "WER ratio (ours / eSpeak)"} <= set(j)


def test_speak_cli_and_python(tiny_run, tmp_path, capsys):
    from seqlab.tasks.tts_family import speak

    out = tmp_path / "a.wav"
    assert main(["speak", str(tiny_run), "The red  cat", str(out), "--json", "--iterations", "2"]) == 0
    j = json.loads(capsys.readouterr().out)
    info = sf.info(str(out))
    assert j["file"] == str(out) and info.samplerate == 22050 and info.frames > 0
    r = speak(tiny_run, "a cat", tmp_path / "b.wav", n_iter=2)
    assert sf.info(r["file"]).samplerate == 22050
    before = out.read_bytes()
    assert main(["speak", str(tiny_run), "a dog", str(out), "--force", "--iterations", "2"]) == 0
    assert out.read_bytes() != before


def test_speak_bad_inputs(tiny_run, gpt_run, tmp_path, capsys):
    from seqlab.tasks.tts_family import speak

    good = tmp_path / "good.wav"
    good.write_bytes(b"keep me")
    before = snapshot(tiny_run)
    assert "non-empty" in one_line_error(capsys, ["speak", str(tiny_run), "  ", str(tmp_path / "x.wav")])
    assert "unknown '#'" in one_line_error(capsys, ["speak", str(tiny_run), "the # cat", str(tmp_path / "x.wav")])
    assert "exists" in one_line_error(capsys, ["speak", str(tiny_run), "the cat", str(good)])
    assert good.read_bytes() == b"keep me"
    assert ".wav" in one_line_error(capsys, ["speak", str(tiny_run), "the cat", str(tmp_path / "x.mp3")])
    assert "no folder" in one_line_error(capsys, ["speak", str(tiny_run), "the cat", str(tmp_path / "no/x.wav")])
    err = one_line_error(capsys, ["speak", str(gpt_run), "the cat", str(tmp_path / "x.wav")])
    assert "tts" in err and "'gpt' run" in err
    assert "no such path" in one_line_error(capsys, ["speak", str(tmp_path / "norun"), "a", str(tmp_path / "x.wav")])
    assert "--speed" in one_line_error(capsys, ["speak", str(tiny_run), "a", str(tmp_path / "x.wav"), "--speed", "0"])
    assert not (tmp_path / "x.wav").exists() and snapshot(tiny_run) == before
    with pytest.raises(ValueError, match="non-empty"):
        speak(tiny_run, "", tmp_path / "y.wav")
    with pytest.raises(ValueError, match="unknown"):
        speak(tiny_run, "caf\u00e9", tmp_path / "y.wav")
    with pytest.raises(ValueError, match="exists"):
        speak(tiny_run, "a cat", good)
    with pytest.raises(ValueError, match="a run of the tts family"):
        speak(gpt_run, "a cat", tmp_path / "y.wav")
    assert not (tmp_path / "y.wav").exists()
    err = one_line_error(capsys, ["train", "tts", "--asr", str(gpt_run), "--out", str(tmp_path / "r")])
    assert "asr" in err and "'gpt' run" in err


def test_tour_part_quick(tmp_path):
    from seqlab.tasks.tts_tour import tts
    from seqlab.tour.context import TourContext
    from seqlab.viz.report import Report

    ctx = TourContext(out=tmp_path, quick=True, progress=False, report=Report("t"))
    sec = ctx.report.section("Text to speech")
    line = tts(ctx, sec)
    assert line.startswith("tts: ")
    assert {"table", "equation", "figure"} <= set(sec.kinds())
    assert (tmp_path / "tts_mel.png").is_file() and (tmp_path / "runs" / "tts" / "run.json").is_file()
