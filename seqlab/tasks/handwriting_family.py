"""Online handwriting (``seqlab.tasks.handwriting``, ``handwriting_mdn``, ``handwriting_data``) as
one family of the registry, whose config field ``task`` says what a run is:

    seqlab train handwriting [--task recognize]   pen offsets -> text: bidirectional GRU + CTC
    seqlab train handwriting --task generate      text -> pen offsets: LSTM mixture density network
                                                  with a soft window over the text (--no-conditional:
                                                  unconditional)
    seqlab train handwriting --task shapes        LASA shapes -> their names
    seqlab read RUN strokes.json                  the text (a shapes run: the shape) of a strokes file
    seqlab write RUN "hello" --png out.png [--bias 1.0] [--seed 0] [--json out.json]
    seqlab eval RUN                               CER and word accuracy / shape accuracy / NLL per point

From Python::

    result = seqlab.train("handwriting", task="recognize", max_steps=1000)
    from seqlab.tasks.handwriting_family import read, write
    print(read(result.run_dir, "word.json")["text"])
    strokes = write(gen_run_dir, "hello", bias=1.0, seed=0)["strokes"]

The data: words of the Python reference manual written with the Hershey fonts by generated
writers (``handwriting_data.word_corpus``: held-out words in val and test, and held-out writer
styles in test), or the LASA shapes (``handwriting_data.lasa_shapes``: held-out demonstrations).
Checkpoints carry ``handwriting.json``: the task, the alphabet and the shape names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.handwriting import HandwritingConfig, HandwritingRecognizer
from seqlab.validation import check_choice, check_float, check_int, fail

META_FILE = "handwriting.json"


@dataclass(frozen=True)
class HandwritingData:
    """The handwriting a run trains on (words for recognize/generate, LASA shapes for shapes).

    Attributes:
        strokes: a strokes corpus JSON file {"samples": [{"strokes", "text" (shapes: "label"), "split"}]} to train on; none: the generated Hershey words or the LASA shapes
        words: training words written (held-in words, training writers)
        val_words: validation words written (held-out words, training writers)
        test_words: test words written (held-out words, held-out writers of another slant band)
        writers: training writers (random styles: font, slant, size, width, spacing, jitter, speed, joins)
        test_writers: test writers (slants in the held-out band)
        fonts: comma-separated Hershey fonts the writers use (scripts, futural); none: scripts for generate (one hand of letters to learn), both otherwise
        corpus_seed: seed of the word split and the writers
        spacing: arc-length step (in normalised units) the ink is resampled at; none: 0.6 for generate (shorter sequences, which the attention window aligns sooner), each writer's own speed otherwise; 0: each writer's own
        shape_copies: perturbed copies (rotation, scale, noise) of each training demonstration (task shapes)
    """

    strokes: str | None = None
    words: int = 4000
    val_words: int = 150
    test_words: int = 300
    writers: int = 60
    test_writers: int = 20
    fonts: str | None = None
    corpus_seed: int = 0
    spacing: float | None = None
    shape_copies: int = 20


@dataclass(frozen=True)
class HandwritingEvaluation:
    """Options of ``seqlab eval`` for a handwriting run.

    Attributes:
        split: test (held-out words and writers / demonstrations) or val
        beam: recognize: prefix beam width (0: greedy)
        limit: at most this many items of the split (none: all)
    """

    split: str = "test"
    beam: int = 0
    limit: int | None = None


@dataclass
class HandwritingRunData:
    """A run's data: per split, (offsets (T, 3), target ids or class, text) rows."""

    task: str
    options: HandwritingData
    items: dict
    alphabet: str
    classes: tuple
    sha256: str | None = None
    _order: dict = field(default_factory=dict)

    def info(self) -> dict:
        o = self.options
        if o.strokes is not None:
            return {"kind": "file", "task": self.task, "strokes": o.strokes, "sha256": self.sha256,
                    "spacing": o.spacing, "classes": list(self.classes)}
        d = {"kind": "lasa" if self.task == "shapes" else "hershey", "task": self.task}
        if self.task == "shapes":
            d.update(shape_copies=o.shape_copies, corpus_seed=o.corpus_seed)
        else:
            d.update(words=o.words, val_words=o.val_words, test_words=o.test_words, writers=o.writers,
                     test_writers=o.test_writers, fonts=o.fonts, corpus_seed=o.corpus_seed, spacing=o.spacing)
        return d

    def get_batch(self, split: str, batch_size: int, generator=None):
        import torch

        from seqlab.tasks.handwriting import collate_ink, collate_text

        rows = self.items[check_choice(split, "split", tuple(self.items))]
        if self.task == "generate" and len(rows) > 4 * batch_size:
            # length buckets: the batch is drawn from 4B neighbours in length order, so the window's
            # point-by-point loop runs over about the batch's own length, not the longest word's
            order = self._order.get(split)
            if order is None:
                order = self._order[split] = sorted(range(len(rows)), key=lambda i: int(rows[i][0].shape[0]))
            start = int(torch.randint(len(rows) - 4 * batch_size + 1, (1,), generator=generator))
            pick = torch.randint(4 * batch_size, (batch_size,), generator=generator).tolist()
            ix = [order[start + k] for k in pick]
        else:
            ix = torch.randint(len(rows), (batch_size,), generator=generator).tolist()
        x, n = collate_ink([rows[i][0] for i in ix])
        if self.task == "shapes":
            return x, n, torch.tensor([rows[i][1] for i in ix])
        y, m = collate_text([rows[i][1] for i in ix])
        return x, n, y, m


def resolved_fonts(task: str, spec: str | None) -> tuple[str, ...]:
    """The fonts of a task's writers: ``spec`` (comma-separated), or the task's default."""
    from seqlab.tasks.handwriting_data import FONTS

    if spec is None:
        return ("scripts",) if task == "generate" else FONTS
    if not isinstance(spec, str):
        fail("fonts", "comma-separated font names", repr(spec))
    fonts = tuple(f.strip() for f in spec.split(",") if f.strip())
    if not fonts or any(f not in FONTS for f in fonts):
        fail("fonts", "comma-separated names among " + ", ".join(FONTS), repr(spec))
    return fonts


GENERATE_SPACING = 0.6


def resolved_spacing(task: str, spacing: float | None) -> float:
    """The resampling step of a task's ink (0: none, each writer's own speed)."""
    if spacing is None:
        return GENERATE_SPACING if task == "generate" else 0.0
    return check_float(spacing, "spacing", minimum=0.0, maximum=5.0)


def ink(strokes, spacing: float = 0.0):
    """Strokes as the models see them: ``normalize``d, then resampled at ``spacing`` if > 0."""
    from seqlab.tasks import handwriting_data as hd

    strokes = hd.normalize(strokes)
    return [hd.resample(s, spacing) for s in strokes] if spacing > 0 else strokes


def make_handwriting_data(task: str, options: HandwritingData, splits=("train", "val", "test")) -> HandwritingRunData:
    """The features of ``splits`` for ``task`` (deterministic in the options)."""
    import numpy as np
    import torch

    from seqlab.tasks import handwriting_data as hd

    check_choice(task, "task", ("recognize", "generate", "shapes"))
    check_int(options.corpus_seed, "corpus_seed", minimum=0, maximum=2**31 - 1)
    items: dict = {}
    if options.strokes is not None:
        if not isinstance(options.strokes, str) or not options.strokes:
            fail("strokes", "a JSON file path", repr(options.strokes))
        samples, sha = hd.load_strokes_corpus(options.strokes, labelled="label" if task == "shapes" else "text")
        step = resolved_spacing(task, options.spacing)
        if task == "shapes":
            classes = tuple(sorted({s["value"] for s in samples}))
            if len(classes) < 2:
                fail(f"strokes {options.strokes}", "samples of at least two labels", classes)
            for split in splits:
                items[split] = [(torch.from_numpy(hd.shape_features(s["strokes"])), classes.index(s["value"]),
                                 s["value"]) for s in samples if s["split"] == split]
            return HandwritingRunData(task, options, items, "", classes, sha)
        for split in splits:
            items[split] = [(torch.from_numpy(hd.to_offsets(ink(s["strokes"], step))),
                             [hd.ALPHABET.index(ch) for ch in s["value"]], s["value"])
                            for s in samples if s["split"] == split]
        return HandwritingRunData(task, options, items, hd.ALPHABET, (), sha)
    if task == "shapes":
        check_int(options.shape_copies, "shape_copies", minimum=0, maximum=1000)
        shapes = hd.lasa_shapes()
        classes = tuple(shapes)
        rng = np.random.default_rng([options.corpus_seed, 7])
        for split in splits:
            rows = []
            for k, name in enumerate(classes):
                for d in hd.SHAPE_SPLITS[split]:
                    demo = shapes[name][d]
                    rows.append((torch.from_numpy(hd.shape_features([demo])), k, name))
                    for _ in range(options.shape_copies if split == "train" else 0):
                        a = rng.uniform(-0.15, 0.15)
                        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
                        p = demo @ rot * rng.uniform(0.8, 1.2, size=2) + rng.normal(0, 0.3, size=demo.shape)
                        rows.append((torch.from_numpy(hd.shape_features([p])), k, name))
            items[split] = rows
        return HandwritingRunData(task, options, items, "", classes)
    for name in ("words", "val_words", "test_words"):
        check_int(getattr(options, name), name, minimum=1, maximum=1_000_000)
    check_int(options.writers, "writers", minimum=1, maximum=100_000)
    check_int(options.test_writers, "test_writers", minimum=1, maximum=100_000)
    counts = {"train": options.words, "val": options.val_words, "test": options.test_words}
    corpus = hd.word_corpus({s: counts[s] for s in splits}, seed=options.corpus_seed, writers=options.writers,
                            test_writers=options.test_writers, fonts=resolved_fonts(task, options.fonts))
    alphabet = hd.ALPHABET
    step = resolved_spacing(task, options.spacing)
    for split in splits:
        items[split] = [(torch.from_numpy(hd.to_offsets(ink(s.strokes, step))), [alphabet.index(ch) for ch in s.text],
                         s.text) for s in corpus[split]]
    return HandwritingRunData(task, options, items, alphabet, ())


class HandwritingFamily(Family):
    name = "handwriting"
    description = ("online handwriting: recognise (BiGRU + CTC), generate (LSTM mixture density network with a "
                   "soft window over the text) or classify LASA shapes (--task)")
    model_class = HandwritingRecognizer
    config_class = HandwritingConfig
    data_class = HandwritingData
    evaluate_class = HandwritingEvaluation
    presets = {
        "cpu-tiny": dict(conv_channels=8, hidden_size=8, num_layers=1, mixtures=3, window_mixtures=2),
        "cpu-small": dict(conv_channels=64, hidden_size=128, num_layers=2, mixtures=10, window_mixtures=5),
    }
    default_preset = "cpu-small"
    # `seqlab train handwriting` with no options: 1,000 steps (the benchmark's recogniser, two layers
    # of 96, reached a test CER of 5.4-6.3% in 690-900 steps; its generator trains 1,500:
    # benchmarks/results/handwriting.md)
    train_defaults = dict(max_steps=1000, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=50, eval_every=250,
                          eval_batches=4, clip_norm=1.0)
    data_fields = ("vocab_size", "num_classes")
    resume_data_options = ("strokes",)
    metric = "validation loss (recognize: CTC per letter; generate: -ln p per point; shapes: cross-entropy)"
    views = ("read", "write")

    def make_data(self, options: HandwritingData, fields, train_config) -> HandwritingRunData:
        return make_handwriting_data(fields.get("task", "recognize"), options)

    def data_from_run(self, run: RunRecord, options, splits=("train", "val", "test")) -> HandwritingRunData:
        saved = run.saved_data()
        task = run.config.task
        if saved.get("kind") == "file":
            path = options.get("strokes") or saved.get("strokes")
            data = make_handwriting_data(task, HandwritingData(strokes=path, spacing=saved.get("spacing")), splits)
            if data.sha256 != saved.get("sha256"):
                fail("strokes", f"the run's strokes file (sha256 {str(saved.get('sha256'))[:12]}...)",
                     f"{path!r} with sha256 {data.sha256[:12]}...")
            return data
        names = ("shape_copies", "corpus_seed") if task == "shapes" else (
            "words", "val_words", "test_words", "writers", "test_writers", "fonts", "corpus_seed", "spacing")
        missing = [k for k in names if k not in saved]
        if missing or saved.get("task") != task:
            fail(f"run {run.dir}", f"a run.json describing the {task} data",
                 "missing " + ", ".join(missing or ["task"]))
        return make_handwriting_data(task, HandwritingData(**{k: saved[k] for k in names}), splits)

    def files(self, data: HandwritingRunData) -> dict[str, str]:
        return {META_FILE: json.dumps({"task": data.task, "alphabet": data.alphabet, "classes": list(data.classes)})}

    def config_from_data(self, data: HandwritingRunData, train_config) -> dict:
        if data.task == "shapes":
            return {"num_classes": len(data.classes), "vocab_size": 27}
        return {"vocab_size": len(data.alphabet) + 1, "num_classes": 26}

    def build(self, config: HandwritingConfig):
        from seqlab.tasks.handwriting import ShapeClassifier
        from seqlab.tasks.handwriting_mdn import HandwritingGenerator

        return {"recognize": HandwritingRecognizer, "generate": HandwritingGenerator,
                "shapes": ShapeClassifier}[config.task](config)

    def extras(self, run: RunRecord) -> None:
        try:
            meta = json.loads(run.file(META_FILE))
        except json.JSONDecodeError:
            fail(f"checkpoint {run.checkpoint}", f"a JSON {META_FILE}", "malformed JSON")
        if not isinstance(meta, dict) or meta.get("task") != run.config.task:
            fail(f"checkpoint {run.checkpoint}", f"a {META_FILE} of task {run.config.task}", repr(meta)[:60])
        alphabet, classes = meta.get("alphabet", ""), meta.get("classes", [])
        if run.config.task != "shapes" and len(alphabet) + 1 != run.config.vocab_size:
            fail(f"checkpoint {run.checkpoint}", f"an alphabet of {run.config.vocab_size - 1} letters", len(alphabet))
        if run.config.task == "shapes" and len(classes) != run.config.num_classes:
            fail(f"checkpoint {run.checkpoint}", f"{run.config.num_classes} shape names", len(classes))
        run.extras["alphabet"], run.extras["classes"] = alphabet, tuple(classes)

    # ---- use

    def evaluate(self, model, run: RunRecord, options: HandwritingEvaluation, data=None):
        import torch

        from seqlab.tasks.handwriting import recognize, word_scores

        check_choice(options.split, "split", ("test", "val"))
        check_int(options.beam, "beam", minimum=0, maximum=256)
        if options.limit is not None:
            check_int(options.limit, "limit", minimum=1)
        data = self.data_from_run(run, {}, (options.split,)) if data is None else data
        rows = data.items[options.split][: options.limit]
        if not rows:
            fail("split", f"a split with samples ({options.split} has none)", options.split)
        task = run.config.task
        if task == "recognize":
            hyps = recognize(model, run.extras["alphabet"], [r[0] for r in rows], beam=options.beam)
            refs = [r[2] for r in rows]
            out = {**word_scores(refs, hyps), "examples": [[r, h] for r, h in zip(refs[:5], hyps[:5])]}
        elif task == "shapes":
            from seqlab.tasks.handwriting import collate_ink

            with torch.no_grad():
                x, n = collate_ink([r[0] for r in rows])
                pred = model(x, n).argmax(-1).tolist()
            out = {"accuracy": sum(p == r[1] for p, r in zip(pred, rows)) / len(rows)}
        else:
            from seqlab.tasks.handwriting import collate_ink, collate_text

            with torch.no_grad():
                x, n = collate_ink([r[0] for r in rows])
                y, m = collate_text([r[1] for r in rows])
                loss, _ = model.loss((x, n, y, m))
            out = {"nll_per_point": float(loss)}
        return HandwritingResult(task, options.split, len(rows), out)

    def report(self, model, run: RunRecord) -> list[str]:
        data = self.data_from_run(run, {}, ("val", "test"))
        split = "test" if data.items["test"] else "val"
        return self.evaluate(model, run, HandwritingEvaluation(split=split, limit=200), data).table().splitlines()

    def read(self, model, run: RunRecord, path: str, *, beam: int = 0) -> dict:
        """What a recogniser (the text) or a shape classifier (the shape) reads in a strokes JSON file."""
        import torch

        from seqlab.tasks import handwriting_data as hd
        from seqlab.tasks.handwriting import recognize

        task = run.config.task
        if task == "generate":
            fail("read", "a recognize or shapes run of the handwriting family (this one writes: seqlab write)",
                 "a generate run")
        check_int(beam, "beam", minimum=0, maximum=256)
        got = hd.load_strokes_json(path)
        if task == "shapes":
            x = torch.from_numpy(hd.shape_features(got["strokes"]))
            with torch.no_grad():
                p = model(x[None])[0].exp()
            k = int(p.argmax())
            return {"file": str(path), "shape": run.extras["classes"][k], "probability": float(p[k])}
        step = resolved_spacing(task, (run.data or {}).get("spacing"))
        x = torch.from_numpy(hd.to_offsets(ink(got["strokes"], step)))
        text = recognize(model, run.extras["alphabet"], [x], beam=beam)[0]
        return {"file": str(path), "points": int(x.shape[0]), "text": text}

    def check_text(self, run: RunRecord, text: str | None) -> None:
        """A text a generate run can write (conditional), or none (unconditional)."""
        c = run.config
        if c.task != "generate":
            fail("write", "a generate run of the handwriting family (this one reads: seqlab read)", f"a {c.task} run")
        if not c.conditional:
            if text:
                fail("TEXT", "no text (this generator is unconditional: it writes what it likes)", repr(text))
            return
        if text is None or not text.strip():
            fail("TEXT", "a non-empty text to write", repr(text))
        alphabet = run.extras["alphabet"]
        bad = sorted(set(text) - set(alphabet))
        if bad:
            fail("TEXT", f"letters of the run's alphabet {alphabet!r}", f"{text!r} (with {''.join(bad)!r})")

    def write(self, model, run: RunRecord, text: str | None, *, bias: float = 0.0, seed: int = 0,
              max_points: int | None = None) -> dict:
        """Strokes written by a generate run: of ``text`` (conditional) or free (unconditional)."""
        import torch

        from seqlab.tasks import handwriting_data as hd

        self.check_text(run, text)
        check_float(bias, "bias", minimum=0.0, maximum=10.0)
        check_int(seed, "seed", minimum=0, maximum=2**63 - 1)
        g = torch.Generator().manual_seed(seed)
        if run.config.conditional:
            chars = torch.tensor([[run.extras["alphabet"].index(ch) for ch in text]])
            x = model.sample(chars, bias=bias, generator=g, max_points=max_points)[0]
        else:
            x = model.sample(batch_size=1, bias=bias, generator=g, max_points=max_points or 120)[0]
        strokes = hd.from_offsets(x.numpy())
        return {"text": text, "bias": bias, "seed": seed, "points": int(x.shape[0]), "strokes": strokes}


@dataclass
class HandwritingResult:
    task: str
    split: str
    n: int
    scores: dict

    def table(self) -> str:
        s = self.scores
        if self.task == "recognize":
            return (f"{self.n} {self.split} words: CER {100 * s['cer']:.1f}%, word accuracy "
                    f"{100 * s['word_accuracy']:.1f}%")
        if self.task == "shapes":
            return f"{self.n} {self.split} shapes: accuracy {100 * s['accuracy']:.1f}%"
        return f"{self.n} {self.split} words: -ln p {s['nll_per_point']:.3f} per point"

    def to_json(self) -> dict:
        return {"task": self.task, "split": self.split, "items": self.n, **self.scores}


def _load(run_dir, verb: str):
    from seqlab import runs

    model, run = runs.load(run_dir)
    if run.family != HandwritingFamily.name:
        fail(verb, "a run of the handwriting family", f"a {run.family!r} run")
    return model, run, runs.get_family(run.family)


def read(run_dir: str | Path, path: str | Path, *, beam: int = 0) -> dict:
    """Python API of ``seqlab read``: the text (or shape) of the strokes JSON file ``path``."""
    from seqlab.tasks.handwriting_data import load_strokes_json

    load_strokes_json(path)  # a bad file is refused before the run is loaded
    model, run, fam = _load(run_dir, "read")
    return fam.read(model, run, str(path), beam=beam)


def write(run_dir: str | Path, text: str | None, *, bias: float = 0.0, seed: int = 0) -> dict:
    """Python API of ``seqlab write``: strokes of ``text`` written by a generate run."""
    model, run, fam = _load(run_dir, "write")
    return fam.write(model, run, text, bias=bias, seed=seed)


register(HandwritingFamily())
