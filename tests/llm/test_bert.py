"""BERT: masking statistics, the MLM cost by hand, bidirectional and padding properties,
learning (overfit one batch; beat the unigram baseline through the trainer), fill-mask,
sequence classification, config round trips and input validation."""

import dataclasses
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from seqlab.data.mlm import (
    CODE_MODULES,
    MLMDataset,
    PassageClassificationDataset,
    default_classification_corpora,
)
from seqlab.data.text import pydoc_text
from seqlab.llm.bert import (
    BERT,
    PRESETS,
    BERTClassifier,
    BERTClassifierConfig,
    BERTConfig,
    evaluate,
    fill,
    mask_tokens,
    masked_accuracy,
    unigram_accuracy,
)
from seqlab.llm.tokenizers import BERT_SPECIAL_TOKENS, CharTokenizer
from seqlab.training.checkpoint import load_checkpoint
from seqlab.training.config import TrainConfig
from seqlab.training.loop import train
from seqlab.transformer.block import Encoder

f64 = torch.float64
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def letters_tok():
    # ids: a..z = 0..25, [PAD] 26, [UNK] 27, [CLS] 28, [SEP] 29, [MASK] 30
    return CharTokenizer(LETTERS, BERT_SPECIAL_TOKENS)


def tiny_config(tok, **kw):
    fields = dict(d_model=32, num_heads=2, num_layers=2, block_size=16)
    fields.update(kw)
    return BERTConfig.for_tokenizer(tok, **fields)


def tiny_bert(tok, seed=0, **kw):
    torch.manual_seed(seed)
    return BERT(tiny_config(tok, **kw))


def random_ids(B, T, high, seed=0):
    return torch.randint(high, (B, T), generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- config


def test_config_round_trip_presets_and_rebuild():
    tok = letters_tok()
    cfg = tiny_config(tok)
    assert (cfg.vocab_size, cfg.mask_id, cfg.pad_id, cfg.cls_id) == (31, 30, 26, 28)
    assert cfg.d_ff == 4 * 32  # None -> 4 D, stored resolved
    d = json.loads(json.dumps(cfg.to_dict()))
    assert BERTConfig.from_dict(d) == cfg
    small = BERTConfig.for_tokenizer(tok, "cpu-small")
    assert (small.num_layers, small.num_heads, small.d_model, small.block_size, small.d_ff) == (4, 4, 128, 128, 512)
    baby = BERTConfig.preset("gpu-baby", vocab_size=100, mask_id=3)
    assert (baby.num_layers, baby.num_heads, baby.d_model, baby.block_size) == (6, 6, 384, 256)
    assert set(PRESETS) >= {"cpu-tiny", "cpu-small", "gpu-baby"}
    # the config is enough to rebuild the model from its state dict
    model = tiny_bert(tok)
    again = BERT(BERTConfig.from_dict(d))
    again.load_state_dict(model.state_dict())
    ids = random_ids(2, 16, 31)
    assert torch.equal(model(ids), again(ids))
    with pytest.raises(ValueError, match=r"BERT config: expected fields among \[.*'vocab_size'.*\], "
                                         r"received unknown fields \['heads'\]"):
        BERTConfig.from_dict({**d, "heads": 2})


def test_classifier_config_round_trip():
    cfg = BERTClassifierConfig(bert=tiny_config(letters_tok()), num_classes=3, pooling="mean", dropout=0.1)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert BERTClassifierConfig.from_dict(d) == cfg
    clf = BERTClassifier.from_config(cfg)
    assert clf.config == cfg and clf.w_c.shape == (3, 32)
    with pytest.raises(ValueError, match=r"received unknown fields \['labels'\]"):
        BERTClassifierConfig.from_dict({**d, "labels": ["x"]})
    with pytest.raises(ValueError, match=r"BERT config: expected fields among .* received unknown fields \['width'\]"):
        BERTClassifierConfig.from_dict({**d, "bert": {**d["bert"], "width": 3}})


@pytest.mark.parametrize("fields, message", [
    (dict(mask_id=31), r"mask_id: expected a token id in \[0, 30\] \(vocab_size 31\), received 31"),
    (dict(pad_id=True), r"pad_id: expected a token id in \[0, 30\] \(vocab_size 31\), received True"),
    (dict(cls_id=-1), r"cls_id: expected a token id in \[0, 30\] \(vocab_size 31\), received -1"),
    (dict(vocab_size=1, mask_id=0), r"vocab_size: expected an integer >= 2, received 1"),
    (dict(d_model=30, num_heads=4), r"d_model: expected a multiple of num_heads = 4, received d_model = 30"),
    (dict(num_layers=0), r"num_layers: expected an integer >= 1, received 0"),
    (dict(block_size=0), r"block_size: expected an integer >= 1, received 0"),
    (dict(dropout=1.0), r"dropout: expected a number < 1.0, received 1.0"),
    (dict(norm_first="yes"), r"norm_first: expected True or False, received 'yes'"),
])
def test_config_validation(fields, message):
    base = dict(vocab_size=31, mask_id=30, d_model=32, num_heads=2)
    with pytest.raises(ValueError, match=message):
        BERTConfig(**{**base, **fields})


def test_config_needs_a_mask_token_and_known_preset():
    with pytest.raises(ValueError, match=r"tokenizer: expected a tokenizer with a \[MASK\] special token, "
                                         r"received CharTokenizer without one"):
        BERTConfig.for_tokenizer(CharTokenizer("abc"))
    with pytest.raises(ValueError, match=r"preset: expected one of 'cpu-tiny', 'cpu-small', 'cpu-medium', "
                                         r"'gpu-baby', received 'huge'"):
        BERTConfig.for_tokenizer(letters_tok(), "huge")


# --------------------------------------------------------------------------- masking


def test_mask_tokens_statistics():
    """Over 128 x 512 positions: ~15 % of the maskable ones selected, of those ~80 % [MASK],
    ~10 % random, ~10 % unchanged. Tolerances are 5 binomial standard deviations: 0.0073 for
    the selection rate (n ~ 60000), 0.021 for the [MASK] share (n ~ 9000). The seed is fixed,
    so the test is deterministic, and a selection rate of 0.16 or a [MASK] share of 0.77
    fails it."""
    tok = letters_tok()
    V, mask_id, specials = tok.vocab_size, tok.mask_id, set(tok.special_ids.values())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(26, (128, 512), generator=g)  # letters only
    ids[:, 0] = tok.cls_id  # [CLS] in front, [PAD] / [SEP] scattered: never selected
    ids[:, -40:] = tok.pad_id
    ids[::3, 100] = tok.sep_id
    inputs, targets = mask_tokens(ids, mask_id=mask_id, vocab_size=V, generator=torch.Generator().manual_seed(1),
                                  special_ids=specials)
    assert inputs.shape == targets.shape == ids.shape and inputs.dtype == targets.dtype == torch.int64
    special = torch.isin(ids, torch.tensor(sorted(specials)))
    selected = targets != -100
    # targets: the original id exactly where selected, -100 elsewhere; unselected inputs untouched
    assert torch.equal(targets[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])
    assert not (selected & special).any()

    def close(count, n, p):
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(count / n - p) < 5 * sd, (count / n, p, 5 * sd)

    n_maskable, n_sel = int((~special).sum()), int(selected.sum())
    close(n_sel, n_maskable, 0.15)
    K = 26  # the non-special ids a random replacement is drawn from
    masked = selected & (inputs == mask_id)
    unchanged = selected & (inputs == ids)
    randomised = selected & (inputs != ids) & (inputs != mask_id)
    close(int(masked.sum()), n_sel, 0.8)
    # a random draw equals the original with probability 1/K
    close(int(unchanged.sum()), n_sel, 0.1 + 0.1 / K)
    close(int(randomised.sum()), n_sel, 0.1 * (1 - 1 / K))
    drawn = inputs[randomised]
    assert not torch.isin(drawn, torch.tensor(sorted(specials))).any()
    assert set(drawn.tolist()) == set(range(26))  # every ordinary id can be drawn
    # deterministic given the generator; another seed gives another mask
    again = mask_tokens(ids, mask_id=mask_id, vocab_size=V, generator=torch.Generator().manual_seed(1),
                        special_ids=specials)
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)
    other = mask_tokens(ids, mask_id=mask_id, vocab_size=V, generator=torch.Generator().manual_seed(2),
                        special_ids=specials)
    assert not torch.equal(other[1], targets)


def test_mask_tokens_selects_at_least_one_per_row():
    tok = letters_tok()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(26, (2000, 4), generator=g)
    ids[:, 0] = tok.cls_id
    ids[-1] = tok.pad_id  # a row of special tokens only
    _, targets = mask_tokens(ids, mask_id=tok.mask_id, vocab_size=tok.vocab_size, generator=g, mask_prob=0.01,
                                  special_ids=tok.special_ids.values())
    selected = targets != -100
    per_row = selected.sum(dim=1)
    assert (per_row[:-1] >= 1).all() and per_row[-1] == 0
    assert not selected[:, 0].any()
    # with p = 0.01 nearly every row is a forced one: uniform over the 3 maskable positions
    share = selected[:-1, 1:].sum(dim=0).double() / selected[:-1, 1:].sum()
    assert (share - 1 / 3).abs().max() < 0.05  # 5 sd of a share of ~2000 draws is 0.053
    # a 1-D row works too
    x, y = mask_tokens(torch.tensor([0, 1, 2]), mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                       generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3,) and (y != -100).sum() >= 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(ids=torch.zeros(2, 3)), r"ids: expected an integer tensor of token ids, received dtype torch.float32"),
    (dict(ids=torch.zeros(2, 3, 4, dtype=torch.long)), r"ids: expected a 1-D or 2-D tensor"),
    (dict(ids=torch.tensor([[0, 31]])), r"ids: expected token ids in \[0, 30\] \(vocab_size 31\), received values in \[0, 31\]"),
    (dict(mask_id=40), r"mask_id: expected a token id in \[0, 30\] \(vocab_size 31\), received 40"),
    (dict(mask_prob=0.0), r"mask_prob: expected a number > 0.0, received 0.0"),
    (dict(mask_prob=1.5), r"mask_prob: expected a number <= 1.0, received 1.5"),
    (dict(special_ids=[99]), r"special_ids: expected a token id in \[0, 30\] \(vocab_size 31\), received 99"),
    (dict(special_ids=list(range(31))), r"special_ids: expected at least one of the 31 ids left as an ordinary token"),
    (dict(generator=0), r"generator: expected a torch.Generator or None, received int"),
])
def test_mask_tokens_bad_inputs(kwargs, message):
    args = dict(ids=torch.zeros(2, 3, dtype=torch.long), mask_id=30, vocab_size=31, generator=None)
    args.update(kwargs)
    ids = args.pop("ids")
    with pytest.raises(ValueError, match=message):
        mask_tokens(ids, **args)


# --------------------------------------------------------------------------- MLM data


def test_mlm_dataset_batches():
    text = "".join(random.Random(0).choice(LETTERS) for _ in range(2000))
    tok = CharTokenizer.from_text(text, BERT_SPECIAL_TOKENS)
    ds = MLMDataset.from_text(text, tok, 16)
    assert ds.block_size == 16 and ds.window == 15 and ds.vocab_size == tok.vocab_size
    for split, data in (("train", ds.data.train_data), ("val", ds.data.val_data)):
        inputs, targets = ds.get_batch(split, 8, torch.Generator().manual_seed(3))
        assert inputs.shape == targets.shape == (8, 16) and inputs.dtype == torch.int64
        assert (inputs[:, 0] == tok.cls_id).all() and (targets[:, 0] == -100).all()
        assert ((targets != -100).sum(dim=1) >= 1).all()
        # undo the masking: each row is [CLS] + a window of the split
        original = torch.where(targets != -100, targets, inputs)[:, 1:]  # (8, 15)
        windows = data.unfold(0, 15, 1)  # every window of the split
        assert all((windows == row).all(dim=1).any() for row in original)
    a = ds.get_batch("train", 8, torch.Generator().manual_seed(5))
    b = ds.get_batch("train", 8, torch.Generator().manual_seed(5))
    c = ds.get_batch("train", 8, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    info = ds.info()
    assert info["kind"] == "mlm" and info["block_size"] == 16 and info["mask_id"] == tok.mask_id
    assert info["cls_id"] == tok.cls_id and sorted(info["special_ids"]) == sorted(tok.special_ids.values())
    json.dumps(info)
    plain = MLMDataset.from_text(text, tok, 16, cls_token=False)
    x, y = plain.get_batch("train", 4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 16) and plain.window == 16 and not (torch.where(y != -100, y, x) == tok.cls_id).any()


def test_mlm_dataset_bad_inputs():
    text = "abcabcabc" * 10
    with pytest.raises(ValueError, match=r"tokenizer: expected a tokenizer with a \[MASK\] token .*, "
                                         r"received CharTokenizer without one"):
        MLMDataset.from_text(text, CharTokenizer.from_text(text), 8)
    ds = MLMDataset.from_text(text, CharTokenizer.from_text(text, BERT_SPECIAL_TOKENS), 8)
    with pytest.raises(ValueError, match=r"split: expected one of 'train', 'val', received 'test'"):
        ds.get_batch("test", 2)
    with pytest.raises(ValueError, match=r"batch_size: expected an integer >= 1, received 0"):
        ds.get_batch("train", 0)
    with pytest.raises(ValueError, match=r"data: expected a seqlab.data.tokens.TokenDataset, received list"):
        MLMDataset([1, 2, 3], mask_id=0)


# --------------------------------------------------------------------------- the model


def test_shapes_and_attention_weights():
    tok = letters_tok()
    model = tiny_bert(tok)
    ids = random_ids(3, 10, 26)
    logits = model(ids)
    assert logits.shape == (3, 10, 31)
    assert model.encode(ids).shape == (3, 10, 32)
    logits2, weights = model(ids, need_weights=True)
    assert torch.equal(logits, logits2) and len(weights) == 2
    for w in weights:
        assert w.shape == (3, 2, 10, 10)
        assert torch.allclose(w.sum(-1), torch.ones(3, 2, 10))


def test_mlm_head_by_hand_with_tied_output_weights():
    tok = letters_tok()
    model = tiny_bert(tok).to(f64)
    ids = random_ids(2, 12, 31)
    h = model.encode(ids)  # (B, T, D)
    # u_t = LN(gelu(w^(m) . a_t + b^(m))),  z_t = w_x . u_t + b^(o)
    u = F.layer_norm(F.gelu(h @ model.w_m.T + model.b_m), (32,), model.norm_m.gamma, model.norm_m.beta, 1e-5)
    expected = u @ model.w_x.T + model.b_o
    assert (model(ids) - expected).abs().max() < 1e-12
    # no separate output matrix: the only (V, D) parameter is the embedding
    assert [n for n, p in model.named_parameters() if p.shape == (31, 32)] == ["w_x"]
    # a^(0)_t = w_x[x_t] + p_t
    a0 = model.w_x[ids] + model.pos.p[:12]
    assert torch.equal(model.encoder(a0), h)


def test_loss_equals_the_hand_computation_on_masked_positions():
    tok = letters_tok()
    model = tiny_bert(tok).to(f64)
    ids = random_ids(3, 12, 26)
    targets = torch.full_like(ids, -100)
    chosen = [(0, 1), (0, 7), (1, 3), (2, 0), (2, 11)]
    for b, t in chosen:
        targets[b, t] = ids[b, t]
    inputs = ids.clone()
    inputs[0, 1] = inputs[1, 3] = tok.mask_id
    loss, metrics = model.loss((inputs, targets))
    logits = model(inputs)
    logp = torch.log_softmax(logits, dim=-1)
    # C = -(1/|M|) sum_M log o[y]
    by_hand = -sum(logp[b, t, ids[b, t]] for b, t in chosen) / len(chosen)
    assert abs(loss.item() - by_hand.item()) < 1e-12
    correct = sum(int(logits[b, t].argmax() == ids[b, t]) for b, t in chosen)
    assert metrics == {"accuracy": correct / len(chosen), "masked": 5, "tokens": 36}
    assert "loss" not in metrics
    loss.backward()
    assert model.w_x.grad is not None and model.w_x.grad.abs().sum() > 0


def test_attention_is_bidirectional_unlike_a_causal_stack():
    tok = letters_tok()
    model = tiny_bert(tok).to(f64)
    ids = random_ids(1, 10, 26)
    later = ids.clone()
    later[0, -1] = (ids[0, -1] + 1) % 26  # change the last token only
    out, out_later = model(ids), model(later)
    # BERT: the first position sees the last one
    assert (out[0, 0] - out_later[0, 0]).abs().max() > 1e-6
    # the same weights with the causal mask (a GPT stack): the first position does not
    causal = Encoder(num_layers=2, config=dataclasses.replace(model.config.block_config(), causal=True)).to(f64)
    causal.load_state_dict(model.encoder.state_dict())

    def a0(x):
        return model.w_x[x] + model.pos.p[: x.shape[1]]

    h, h_later = causal(a0(ids)), causal(a0(later))
    assert torch.equal(h[0, :-1], h_later[0, :-1]) and not torch.equal(h[0, -1], h_later[0, -1])


def test_padding_mask_hides_the_pad_tokens():
    tok = letters_tok()
    model = tiny_bert(tok).to(f64)
    lengths = torch.tensor([10, 6, 3])
    ids = random_ids(3, 10, 26)
    real = torch.arange(10)[None, :] < lengths[:, None]  # (B, T)
    ids = ids.masked_fill(~real, tok.pad_id)
    other = torch.where(real, ids, random_ids(3, 10, 31, seed=9))  # other ids at the padding
    out = model(ids, key_padding_mask=real)
    out_other = model(other, key_padding_mask=real)
    assert (out[real] - out_other[real]).abs().max() < 1e-12
    # without the mask the real positions see the pad ids
    assert (model(ids)[real] - model(other)[real]).abs().max() > 1e-6
    # the loss takes the mask, or the lengths
    targets = torch.full_like(ids, -100)
    targets[:, 1] = ids[:, 1]
    l_mask, _ = model.loss((ids, targets, real))
    l_lengths, _ = model.loss((ids, targets, lengths))
    l_other, _ = model.loss((other, targets, real))
    assert l_mask.item() == l_lengths.item() and abs(l_mask.item() - l_other.item()) < 1e-12


def test_fused_attention_path_agrees():
    tok = letters_tok()
    model = tiny_bert(tok).to(f64)
    fused = BERT(dataclasses.replace(model.config, fused=True)).to(f64)
    fused.load_state_dict(model.state_dict())
    ids = random_ids(2, 9, 26)
    real = torch.tensor([[True] * 9, [True] * 5 + [False] * 4])
    assert (model(ids, key_padding_mask=real) - fused(ids, key_padding_mask=real)).abs().max() < 1e-10


@pytest.mark.parametrize("make, message", [
    (lambda: torch.zeros(2, 4), r"ids: expected an integer tensor of token ids, received dtype torch.float32"),
    (lambda: torch.zeros(4, dtype=torch.long), r"ids: expected a 2-D tensor \(batch, time\), received shape \(4\)"),
    (lambda: torch.full((2, 4), 31), r"ids: expected token ids in \[0, 30\] \(vocab_size 31\), received values in \[31, 31\]"),
    (lambda: torch.full((2, 4), -1), r"ids: expected token ids in \[0, 30\] \(vocab_size 31\), received values in \[-1, -1\]"),
    (lambda: torch.zeros(2, 17, dtype=torch.long),
     r"ids: expected at most block_size = 16 positions \(the model's longest sequence\), received 17 positions, shape \(2, 17\)"),
    (lambda: torch.zeros(2, 0, dtype=torch.long), r"ids: expected at least one sequence and one position"),
])
def test_forward_bad_ids(make, message):
    model = tiny_bert(letters_tok())
    with pytest.raises(ValueError, match=message):
        model(make())


def test_loss_and_mask_bad_inputs():
    model = tiny_bert(letters_tok())
    ids = torch.zeros(2, 4, dtype=torch.long)
    y = torch.full((2, 4), -100)
    y[0, 0] = 1
    with pytest.raises(ValueError, match=r"targets: expected shape \(2, 4\) \(as inputs\), received shape \(2, 3\)"):
        model.loss((ids, y[:, :3]))
    with pytest.raises(ValueError, match=r"targets: expected at least one masked position \(a target other than -100\), received none"):
        model.loss((ids, torch.full((2, 4), -100)))
    with pytest.raises(ValueError, match=r"targets: expected -100 or token ids in \[0, 30\], received values in \[40, 40\]"):
        model.loss((ids, y.masked_fill(y == 1, 40)))
    with pytest.raises(ValueError, match=r"targets: expected an integer tensor"):
        model.loss((ids, y.float()))
    with pytest.raises(ValueError, match=r"batch: expected a tuple \(inputs, targets\) or \(inputs, targets, "
                                         r"key_padding_mask or lengths\), received Tensor"):
        model.loss(ids)
    with pytest.raises(ValueError, match=r"key_padding_mask: expected a shape that broadcasts to \(batch, T keys\) = \(2, 4\), received shape \(2, 5\)"):
        model(ids, key_padding_mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"lengths: expected every length <= T = 4, received maximum 5"):
        model.loss((ids, y, torch.tensor([5, 2])))


# --------------------------------------------------------------------------- learning


def test_overfits_one_masked_batch():
    tok = letters_tok()
    model = tiny_bert(tok, num_layers=1)
    g = torch.Generator().manual_seed(0)
    batch = mask_tokens(torch.randint(26, (8, 16), generator=g), mask_id=tok.mask_id, vocab_size=tok.vocab_size,
                        generator=g, special_ids=tok.special_ids.values())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model.loss(batch)[0].item()
    assert abs(first - math.log(31)) < 0.5  # an untrained model guesses uniformly
    for _ in range(100):
        loss, metrics = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss, metrics = model.loss(batch)
    assert loss.item() < 0.05 and metrics["accuracy"] == 1.0  # log V = 3.43


ABC = "abc" * 300


@pytest.fixture(scope="module")
def abc_run(tmp_path_factory):
    """A tiny BERT trained by the generic trainer on "abcabc...", 250 steps (about 3 s)."""
    tok = CharTokenizer.from_text(ABC, BERT_SPECIAL_TOKENS)
    cfg = BERTConfig.for_tokenizer(tok, d_model=32, num_heads=2, num_layers=1, block_size=16)
    torch.manual_seed(0)
    model = BERT(cfg)
    data = MLMDataset.from_text(ABC, tok, 16)
    tc = TrainConfig(max_steps=250, batch_size=16, lr=3e-3, warmup_steps=10, eval_every=250, eval_batches=2,
                     device="cpu", log_every=50)
    run_dir = tmp_path_factory.mktemp("bert-abc")
    result = train(model, data, tc, run_dir, family=BERT.family, model_config=cfg.to_dict(), data_info=data.info(),
                   files={"tokenizer.json": tok.to_json()}, progress=False)
    return model, tok, data, result


def test_mlm_training_beats_the_unigram_baseline(abc_run):
    model, tok, data, result = abc_run
    assert result.steps == 250 and result.stopped == "max_steps"
    val = [r for r in result.history if r["split"] == "val"]
    assert val and "accuracy" in val[-1] and val[-1]["masked"] > 0
    model.eval()
    inputs, targets = data.get_batch("val", 256, torch.Generator().manual_seed(123))
    with torch.no_grad():
        loss, metrics = model.loss((inputs, targets))
    counts = torch.bincount(data.data.train_data, minlength=tok.vocab_size)
    baseline = unigram_accuracy(targets, counts)
    assert baseline < 0.4  # a, b and c are equally frequent
    assert metrics["accuracy"] > 0.95 and loss.item() < 0.3  # log 3 = 1.10 for the unigram model


def test_fill_predicts_the_obvious_filler_from_either_side(abc_run):
    model, tok, _, _ = abc_run
    [mid] = fill(model, tok, "abca[MASK]cab")
    assert mid[0][0] == "b" and mid[0][1] > 0.8
    # right context only: after [CLS] the first letter follows from the next one
    [first] = fill(model, tok, "[MASK]bcab")
    assert first[0][0] == "a"
    two = fill(model, tok, "ab[MASK]ab[MASK]", top_k=3)
    assert [f[0][0] for f in two] == ["c", "c"]
    for fillers in [mid, first, *two]:
        probs = [p for _, p in fillers]
        assert probs == sorted(probs, reverse=True)
        assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
    assert len(mid) == 5 and len(two[0]) == 3


def test_checkpoint_reloads_the_trained_model(abc_run):
    model, tok, _, result = abc_run
    ckpt = load_checkpoint(result.checkpoint, family="bert")
    again = BERT(BERTConfig.from_dict(ckpt.config))
    again.load_state_dict(ckpt.state_dict)
    tok2 = CharTokenizer.from_json(ckpt.files["tokenizer.json"])
    assert fill(again, tok2, "abca[MASK]cab") == fill(model, tok, "abca[MASK]cab")


def test_fill_on_an_untrained_model_and_bad_inputs():
    tok = letters_tok()
    model = tiny_bert(tok)
    out = fill(model, tok, "ab[MASK]d", top_k=31)
    probs = [p for _, p in out[0]]
    assert len(probs) == 31 and probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-5
    with pytest.raises(ValueError, match=r"^text: expected at least one \[MASK\] token \(e.g. 'ab\[MASK\]d'\), received 'abcd'$"):
        fill(model, tok, "abcd")
    with pytest.raises(ValueError, match=r"text: expected characters from the tokenizer's 26-character vocabulary, "
                                         r"received unknown characters 'Z', '!'"):
        fill(model, tok, "aZ[MASK]!")
    with pytest.raises(ValueError, match=r"text: expected at most block_size = 16 tokens with \[CLS\], received 17 tokens"):
        fill(model, tok, "a" * 15 + "[MASK]")
    with pytest.raises(ValueError, match=r"top_k: expected an integer <= 31, received 32"):
        fill(model, tok, "[MASK]", top_k=32)
    with pytest.raises(ValueError, match=r"top_k: expected an integer >= 1, received 0"):
        fill(model, tok, "[MASK]", top_k=0)
    with pytest.raises(ValueError, match=r"tokenizer: expected vocab_size 31 \(the model's\), received vocab_size 8"):
        fill(model, CharTokenizer("abc", BERT_SPECIAL_TOKENS), "a[MASK]")
    with pytest.raises(ValueError, match=r"model: expected a BERT, received Linear"):
        fill(torch.nn.Linear(2, 2), tok, "a[MASK]")
    assert len(fill(model, tok, "a" * 14 + "[MASK]")) == 1  # 16 tokens with [CLS]: fits


# --------------------------------------------------------------------------- classification


def _two_corpora(n=1200, seed=0):
    """Two trivially different corpora: mostly "a" vs mostly "b" (80 / 20)."""
    rng = random.Random(seed)
    return {"a-ish": "".join(rng.choice("aaaab") for _ in range(n)),
            "b-ish": "".join(rng.choice("abbbb") for _ in range(n))}


def test_passage_dataset_splits_and_balanced_batches():
    texts = _two_corpora()
    tok = CharTokenizer("ab", BERT_SPECIAL_TOKENS)
    ds = PassageClassificationDataset(texts, tok, 16, val_fraction=0.25)
    assert ds.labels == ("a-ish", "b-ish") and ds.num_classes == 2 and ds.passage_length == 15
    # 1200 tokens: 900 train -> 60 passages, 300 val -> 20 passages, per label
    assert ds.num_passages("train") == 120 and ds.num_passages("val") == 40
    ids, labels = ds.passages("val")
    assert ids.shape == (40, 16) and (ids[:, 0] == tok.cls_id).all()
    assert labels.tolist() == [0] * 20 + [1] * 20
    assert tok.decode(ids[20, 1:]) == texts["b-ish"][900:915]  # passages in text order
    x, y = ds.get_batch("train", 9, torch.Generator().manual_seed(0))
    assert x.shape == (9, 16) and y.shape == (9,) and sorted(torch.bincount(y).tolist()) == [4, 5]
    train_ids, train_labels = ds.passages("train")
    for row, label in zip(x, y):  # each passage is one of its label's training passages
        assert ((train_ids == row).all(dim=1) & (train_labels == label)).any()
    again = ds.get_batch("train", 9, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x) and torch.equal(again[1], y)
    info = ds.info()
    assert info["labels"] == ["a-ish", "b-ish"] and info["val_passages"] == 40
    json.dumps(info)


def test_passage_dataset_bad_inputs():
    tok = CharTokenizer("ab", BERT_SPECIAL_TOKENS)
    with pytest.raises(ValueError, match=r"texts: expected at least 2 labelled corpora, received 1"):
        PassageClassificationDataset({"a": "ab" * 50}, tok, 8)
    with pytest.raises(ValueError, match=r"texts\['b'\]: expected a non-empty str, received ''"):
        PassageClassificationDataset({"a": "ab" * 50, "b": ""}, tok, 8)
    with pytest.raises(ValueError, match=r"texts\['b'\] val split: expected at least one passage of 7 tokens, "
                                         r"received 2 tokens \(a corpus of 20 tokens with val_fraction 0.1\)"):
        PassageClassificationDataset({"a": "ab" * 50, "b": "ab" * 10}, tok, 8)
    with pytest.raises(ValueError, match=r"texts\['a'\]: expected characters from the tokenizer's 2-character "
                                         r"vocabulary, received unknown characters 'c'"):
        PassageClassificationDataset({"a": "abc" * 50, "b": "ab" * 50}, tok, 8)
    with pytest.raises(ValueError, match=r"tokenizer: expected a tokenizer with a \[CLS\] token"):
        PassageClassificationDataset({"a": "ab" * 50, "b": "ab" * 50}, CharTokenizer("ab"), 8)


def test_default_classification_corpora_come_from_the_standard_library():
    full = default_classification_corpora()
    assert set(full) == {"manual", "code"} and full["manual"] == pydoc_text()
    assert "class JSONDecoder" in full["code"] and "def dedent" in full["code"] and len(CODE_MODULES) >= 3
    assert 0.5 < len(full["code"]) / len(full["manual"]) < 2  # comparable sizes
    small = default_classification_corpora(max_chars=3000)
    assert {k: len(v) for k, v in small.items()} == {"manual": 3000, "code": 3000}
    tok = CharTokenizer.from_text(small["manual"] + small["code"], BERT_SPECIAL_TOKENS)
    ds = PassageClassificationDataset(small, tok, 64)
    assert ds.labels == ("manual", "code") and ds.num_passages("val") == 2 * (300 // 63)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_learns_to_separate_two_corpora(pooling):
    tok = CharTokenizer("ab", BERT_SPECIAL_TOKENS)
    ds = PassageClassificationDataset(_two_corpora(), tok, 16, val_fraction=0.25)
    torch.manual_seed(0)
    clf = BERTClassifier(BERT(tiny_config(tok, num_layers=1)), num_classes=2, pooling=pooling)
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    first, _ = clf.loss(ds.get_batch("train", 32, torch.Generator().manual_seed(0)))
    assert abs(first.item() - math.log(2)) < 0.1
    for step in range(1, 61):
        loss, metrics = clf.loss(ds.get_batch("train", 32, torch.Generator().manual_seed(step)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(metrics) == {"accuracy", "tokens"}
    assert evaluate(clf, ds, "val") == 1.0 and evaluate(clf, ds, "train") >= 0.98
    assert clf.training  # evaluate restores the mode


def test_classifier_pooling_and_padding():
    tok = letters_tok()
    model = tiny_bert(tok).to(f64)
    clf = BERTClassifier(model, num_classes=3, pooling="mean").to(f64)
    ids = random_ids(2, 8, 26)
    ids[:, 0] = tok.cls_id
    real = torch.tensor([[True] * 8, [True] * 5 + [False] * 3])
    h = model.encode(ids, real)
    pooled = torch.stack([h[0].mean(0), h[1, :5].mean(0)])
    assert (clf(ids, key_padding_mask=real) - (pooled @ clf.w_c.T + clf.b_c)).abs().max() < 1e-12
    other = ids.clone()
    other[1, 5:] = 3
    assert (clf(ids, key_padding_mask=real) - clf(other, key_padding_mask=real)).abs().max() < 1e-12
    cls = BERTClassifier(model, num_classes=3).to(f64)
    assert (cls(ids) - (model.encode(ids)[:, 0] @ cls.w_c.T + cls.b_c)).abs().max() < 1e-12


def test_classifier_bad_inputs():
    tok = letters_tok()
    model = tiny_bert(tok)
    with pytest.raises(ValueError, match=r"num_classes: expected an integer >= 2, received 1"):
        BERTClassifier(model, num_classes=1)
    with pytest.raises(ValueError, match=r"pooling: expected one of 'cls', 'mean', received 'max'"):
        BERTClassifier(model, num_classes=2, pooling="max")
    with pytest.raises(ValueError, match=r"bert: expected a BERT, received Linear"):
        BERTClassifier(torch.nn.Linear(2, 2), num_classes=2)
    clf = BERTClassifier(model, num_classes=2)
    ids = torch.full((2, 5), tok.cls_id)
    with pytest.raises(ValueError, match=r"ids: expected \[CLS\] \(id 28\) at position 0 of every row "
                                         r"\(pooling='cls'\), received id 3 at position 0 of 1 row\(s\)"):
        clf(torch.tensor([[28, 1, 2], [3, 1, 2]]))
    with pytest.raises(ValueError, match=r"labels: expected class ids in \[0, 1\], received values in \[0, 2\]"):
        clf.loss((ids, torch.tensor([0, 2])))
    with pytest.raises(ValueError, match=r"labels: expected one label per sequence \(2\), received shape \(3\)"):
        clf.loss((ids, torch.tensor([0, 1, 1])))
    with pytest.raises(ValueError, match=r"labels: expected a 1-D tensor \(batch,\), received shape \(2, 1\)"):
        clf.loss((ids, torch.tensor([[0], [1]])))
    ds = PassageClassificationDataset({"x": "ab" * 50, "y": "ba" * 50, "z": "aa" * 50},
                                      CharTokenizer("ab", BERT_SPECIAL_TOKENS), 8)
    with pytest.raises(ValueError, match=r"dataset: expected 2 labels \(the classifier's num_classes\), "
                                         r"received 3 labels \['x', 'y', 'z'\]"):
        evaluate(clf, ds, "val")


def test_masked_accuracy_and_its_bad_inputs():
    tok = letters_tok()
    data = MLMDataset.from_text(LETTERS * 20, tok, 16)
    model = tiny_bert(tok)
    model.train()
    result = masked_accuracy(model, data, batches=2, batch_size=4, seed=1)
    assert model.training  # the mode is restored
    assert set(result) == {"accuracy", "unigram_accuracy", "masked"} and result["masked"] > 0
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["unigram_accuracy"] <= 1.0
    assert masked_accuracy(model, data, batches=2, batch_size=4, seed=1) == result  # the seed fixes the windows
    for kwargs, message in [
        (dict(model=torch.nn.Linear(2, 2)), r"^model: expected a BERT, received Linear$"),
        (dict(data=[1, 2]), r"^data: expected an MLMDataset, received list$"),
        (dict(batches=0), r"^batches: expected an integer >= 1, received 0$"),
        (dict(batch_size=0), r"^batch_size: expected an integer >= 1, received 0$"),
    ]:
        args = {"model": model, "data": data, **kwargs}
        with pytest.raises(ValueError, match=message):
            masked_accuracy(args.pop("model"), args.pop("data"), **args)
