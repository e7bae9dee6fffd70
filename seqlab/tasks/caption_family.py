"""Image captioning ("show, attend and tell", ``seqlab.tasks.caption``) as a family of the
registry: ``seqlab train caption [--images FOLDER] [--no-attention]``, ``seqlab caption RUN
image.png [--png attention.png]``, ``seqlab eval RUN``, and the same from Python::

    result = seqlab.train("caption")
    model, run = seqlab.load(result.run_dir)
    from seqlab.tasks.caption_family import caption_image
    print(caption_image(model, run, "scene.png")["caption"])
    print(seqlab.evaluate(result.run_dir).table())

The data are the generated scene set of ``seqlab.tasks.caption_data`` (2-3 coloured digits and
shapes on a 48 x 48 canvas; the test split holds (colour, kind) pairs no training scene has),
or a folder of RGB images with a ``captions.tsv`` (``--images FOLDER``). Checkpoints carry the
vocabulary as ``vocab.json``. The evaluation: BLEU-4 and CIDEr (pycocoevalcap's pure-Python
scorers), the fraction of captions fully correct, and, on the scene set, the accuracy of each
attribute and relation named in the caption.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from seqlab.runs import Family, RunRecord, register
from seqlab.tasks.caption import CaptionConfig, CaptionModel
from seqlab.validation import check_choice, check_int, fail

VAL_SCENES = 500
EVAL_SPLITS = ("test", "test_seen", "val")


@dataclass(frozen=True)
class CaptionData:
    """The images a caption run learns from.

    Attributes:
        images: a folder of RGB images with captions.tsv (filename<TAB>caption per line); empty: the generated scene set
        scenes: training scenes of the generated set (held-out colour-kind pairs never among them); 0: a stream of new scenes at every batch
        scene_seed: the seed of the generated scene set (every split)
        image_size: the side of a folder's images in pixels (each must be image_size x image_size; the scene set is 48)
    """

    images: str = ""
    scenes: int = 0
    scene_seed: int = 0
    image_size: int = 48


@dataclass(frozen=True)
class CaptionEvaluation:
    """Options of ``seqlab eval`` for a caption run.

    Attributes:
        split: test (held-out colour-kind pairs), test_seen (seen pairs) or val; a folder has test and val only
        n: images to caption (at most the split's size for a folder)
    """

    split: str = "test"
    n: int = 500


class Captions:
    """A caption run's data: the options, the vocabulary and the splits. ``get_batch`` gives
    (images (B, 3, S, S), ids (B, max_len)) drawn uniformly with the step's generator."""

    def __init__(self, options: CaptionData) -> None:
        from seqlab.tasks import caption_data as cd

        self.options = options
        check_int(options.scene_seed, "scene_seed", minimum=0)
        if options.images:
            folder = cd.load_caption_folder(options.images, options.image_size, options.scene_seed)
            self.folder = folder
            self.fingerprint = cd.folder_fingerprint(folder)
            train_caps = [folder.captions[i] for i in folder.split_index["train"]]
            self.vocab = cd.Vocabulary.from_captions(train_caps)
            self.image_size = options.image_size
            self._captions = {s: [folder.captions[i] for i in idx] for s, idx in folder.split_index.items()}
        else:
            if options.image_size != cd.CANVAS:
                fail("image_size", f"{cd.CANVAS} for the generated scene set (other sizes need --images)",
                     options.image_size)
            check_int(options.scenes, "scenes", minimum=0, maximum=2_000_000)
            self.folder = None
            self.fingerprint = None
            self.vocab = cd.Vocabulary.scenes()
            self.image_size = cd.CANVAS
            self.sets = {"val": cd.make_scenes("val", VAL_SCENES, options.scene_seed)}
            if options.scenes:
                self.sets["train"] = cd.make_scenes("train", options.scenes, options.scene_seed)
            self._captions = {s: v.captions for s, v in self.sets.items()}
        self.max_len = max(len(c.split()) for caps in self._captions.values() for c in caps) + 2
        if not options.images:
            self.max_len = max(self.max_len, 18)  # the grammar's longest caption: 3 objects, 16 words
        self._ids = {s: torch.tensor([self.vocab.encode(c, self.max_len) for c in caps], dtype=torch.long)
                     for s, caps in self._captions.items()}

    def images(self, split: str, index) -> torch.Tensor:
        if self.folder is not None:
            rows = torch.as_tensor(self.folder.split_index[split][list(index)], dtype=torch.long)
            return self.folder.images[rows]
        return self.sets[split].images(index)

    def size(self, split: str) -> int:
        return len(self._captions[split])

    @property
    def streaming(self) -> bool:
        """True when every training batch is new scenes (``scenes=0``), not draws from a fixed set."""
        return self.folder is None and "train" not in self.sets

    def get_batch(self, split: str, batch_size: int, generator: torch.Generator | None = None):
        if split == "train" and self.streaming:
            # a stream: batch_size new training scenes from a seed drawn with the step's
            # generator (so a resumed run draws the same ones); measured to generalise better
            # than a fixed set of 20,000 scenes, which the model fits to a training loss near 0
            from seqlab.tasks import caption_data as cd

            seed = int(torch.randint(2 ** 62, (1,), generator=generator)) + 1 + self.options.scene_seed
            scenes = cd.make_scenes("train", batch_size, seed)
            ids = torch.tensor([self.vocab.encode(c, self.max_len) for c in scenes.captions], dtype=torch.long)
            return scenes.images(range(batch_size)), ids
        idx = torch.randint(self.size(split), (batch_size,), generator=generator)
        return self.images(split, idx.tolist()), self._ids[split][idx]

    def info(self) -> dict:
        o = self.options
        if self.folder is not None:
            return {"kind": "caption-folder", "images": self.folder.folder, "image_size": o.image_size,
                    "scene_seed": o.scene_seed, "sha256": self.fingerprint, "n": len(self.folder.names)}
        return {"kind": "caption-scenes", "scenes": o.scenes, "scene_seed": o.scene_seed, "val_scenes": VAL_SCENES}


@dataclass
class CaptionResult:
    """``seqlab eval``'s result: the scores, and a few examples."""

    scores: dict
    split: str
    n: int
    examples: list

    def table(self) -> str:
        s = self.scores
        lines = [f"{self.split}: {self.n} images, BLEU-4 {s['bleu4']:.3f}, CIDEr {s['cider']:.3f}, fully correct "
                 f"{s['fully_correct']:.3f}"]
        attrs = [k for k in ("size", "colour", "kind", "object", "relation", "count", "held_out_pair")
                 if k in s and not (isinstance(s[k], float) and math.isnan(s[k]))]
        if attrs:
            lines.append("accuracy: " + ", ".join(f"{k.replace('_', '-')} {s[k]:.3f}" for k in attrs))
        for ref, hyp in self.examples[:3]:
            lines.append(f"  {'ok ' if ref == hyp else 'BAD'} {hyp!r}" + ("" if ref == hyp else f" (true: {ref!r})"))
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"split": self.split, "n": self.n, **{k: (None if isinstance(v, float) and math.isnan(v) else v)
                                                     for k, v in self.scores.items()},
                "examples": [{"reference": r, "caption": h} for r, h in self.examples]}


def generate_captions(model: CaptionModel, vocab, images: torch.Tensor, batch_size: int = 128):
    """Greedy captions of ``images`` (N, 3, S, S): (captions, alphas list of (T_k, L))."""
    captions, alphas = [], []
    for k in range(0, images.shape[0], batch_size):
        ids, al = model.generate(images[k:k + batch_size])
        for row, a in zip(ids.tolist(), al):
            text = vocab.decode(row)
            captions.append(text)
            alphas.append(a[:len(text.split()) + 1])  # the words and <eos>
    return captions, alphas


def score(references: list[str], hypotheses: list[str], scenes: bool) -> dict:
    """BLEU-4, CIDEr, fully correct; with ``scenes`` the attribute accuracies too."""
    from seqlab.tasks.caption_data import attribute_scores, bleu_cider

    out = bleu_cider(references, hypotheses)
    if scenes:
        out.update(attribute_scores(references, hypotheses))
    else:
        out["fully_correct"] = sum(r == h for r, h in zip(references, hypotheses)) / len(references)
    return out


def evaluate_captions(model: CaptionModel, vocab, options: CaptionEvaluation, data: dict) -> CaptionResult:
    """Caption ``options.n`` images of ``options.split`` of the run's data and score them."""
    from seqlab.tasks import caption_data as cd

    check_choice(options.split, "split", EVAL_SPLITS)
    check_int(options.n, "n", minimum=1, maximum=100_000)
    if data.get("kind") == "caption-folder":
        folder = cd.load_caption_folder(data["images"], data["image_size"], data["scene_seed"])
        split = "val" if options.split == "val" else "test"
        idx = folder.split_index[split][:options.n]
        images, refs = folder.images[torch.as_tensor(idx, dtype=torch.long)], [folder.captions[i] for i in idx]
        scenes = False
    else:
        s = cd.make_scenes(options.split, options.n, data["scene_seed"])
        images, refs, scenes = s.images(range(len(s))), s.captions, True
        split = options.split
    hyps, _ = generate_captions(model, vocab, images)
    return CaptionResult(score(refs, hyps, scenes), split, len(refs), list(zip(refs, hyps))[:10])


def caption_image(model: CaptionModel, run: RunRecord, path: str | os.PathLike) -> dict[str, Any]:
    """The caption of the image file ``path`` (RGB, the run's image size): its words and each
    word's attention map over the feature map (``alphas`` (T, H', W'), <eos> last)."""
    from seqlab.tasks.caption_data import read_image

    image = read_image(path, model.config.image_size)
    captions, alphas = generate_captions(model, run.tokenizer, image[None])
    side = model.config.map_size
    words = (captions[0].split() + ["<eos>"])[:alphas[0].shape[0]]  # no <eos> when the caption ran to max_len
    return {"caption": captions[0], "words": words, "image": image,
            "alphas": alphas[0].reshape(-1, side, side), "attention": model.config.attention}


class CaptionFamily(Family):
    name = "caption"
    description = "image captioning: a CNN encoder and a recurrent decoder with soft attention (show, attend and tell)"
    model_class = CaptionModel
    config_class = CaptionConfig
    data_class = CaptionData
    evaluate_class = CaptionEvaluation
    presets = {
        "cpu-tiny": dict(channels=8, feature_size=16, embed_size=8, hidden_size=16, attention_size=8),
        "cpu-small": dict(),
    }
    default_preset = "cpu-small"
    train_defaults = dict(max_steps=7000, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=50, weight_decay=0.01,
                          clip_norm=1.0, eval_every=250, eval_batches=4)
    data_fields = ("vocab_size", "max_len", "image_size")
    metric = "validation loss (per word)"
    views = ("caption",)

    def make_data(self, options: CaptionData, fields, train_config) -> Captions:
        return Captions(options)

    def data_from_run(self, run: RunRecord, options) -> Captions:
        saved = run.saved_data()
        kind = saved.get("kind")
        if kind == "caption-scenes" and all(k in saved for k in ("scenes", "scene_seed")):
            return Captions(CaptionData(scenes=saved["scenes"], scene_seed=saved["scene_seed"]))
        if kind == "caption-folder" and all(k in saved for k in ("images", "image_size", "scene_seed", "sha256")):
            data = Captions(CaptionData(images=saved["images"], image_size=saved["image_size"],
                                        scene_seed=saved["scene_seed"]))
            if data.fingerprint != saved["sha256"]:
                fail("images", f"the folder the run was trained on (sha256 {saved['sha256'][:12]}...)",
                     f"{saved['images']!r}, whose images or captions changed (sha256 {data.fingerprint[:12]}...)")
            return data
        fail(f"run {run.dir}", "a run.json describing a caption data set", f"kind {kind!r} or missing fields")

    def files(self, data: Captions) -> dict[str, str]:
        return {"vocab.json": data.vocab.to_json()}

    def config_from_data(self, data: Captions, train_config) -> dict:
        return {"vocab_size": len(data.vocab), "max_len": data.max_len, "image_size": data.image_size}

    def extras(self, run: RunRecord) -> None:
        from seqlab.tasks.caption_data import Vocabulary

        run.tokenizer = Vocabulary.from_json(run.file("vocab.json"))
        if len(run.tokenizer) != run.config.vocab_size:
            fail(f"checkpoint {run.checkpoint}", f"a vocab.json of {run.config.vocab_size} words",
                 f"{len(run.tokenizer)} words")

    # ---- use

    def evaluate(self, model: CaptionModel, run: RunRecord, options: CaptionEvaluation) -> CaptionResult:
        return evaluate_captions(model, run.tokenizer, options, run.saved_data())

    def report(self, model: CaptionModel, run: RunRecord) -> list[str]:
        if run.data is None:
            return []
        return self.evaluate(model, run, CaptionEvaluation(n=100)).table().splitlines()

    def caption(self, model: CaptionModel, run: RunRecord, path: str | os.PathLike) -> dict[str, Any]:
        return caption_image(model, run, path)


register(CaptionFamily())
