"""The Family protocol and the one registry: train, resume, load and sample, written once.

A *family* is everything the tools need to know about one kind of model (``Family``
below): its name, its config dataclass and presets, how to build the model, its default
training options, how to make its data from options and again from a saved run, the
extra files its checkpoints carry, and how to sample, evaluate or report on it. Each
family registers itself in one small file next to its model, named ``*_family.py``
(``seqlab/recurrent/charlm_family.py``, ...); the registry finds those files itself, so
adding a family touches nothing shared.

The registry then does the rest for every family:

    seqlab.train("lstm", max_steps=200)            a new run: model, data and training options in one
                                                   flat set of names; returns a TrainResult (.run_dir)
    seqlab.resume("runs/lstm-...", max_steps=400)  continue a run exactly where it stopped
    model, run = seqlab.load("runs/lstm-...")      the model (eval mode) and its RunRecord
    seqlab.sample("runs/lstm-...", prompt="def ")  the family's sampler
    seqlab.evaluate("runs/vae-...")                the family's evaluation, where it has one

The command line is made from the same registry: ``seqlab train FAMILY`` has one
sub-command per family (or per variant: ``rnn``, ``lstm`` and ``gru`` are variants of the
``charlm`` family that fix its ``cell``), with flags generated from the family's config,
its data options and ``TrainConfig``.

Run directories written by seqlab 0.1 still load: a family names the config fields and
weights it renamed since (``legacy_fields``, ``legacy_weights``), and loading or resuming
translates them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from seqlab.memory import check_model_fits
from seqlab.training.checkpoint import Checkpoint, load_checkpoint, load_weights
from seqlab.training.config import TrainConfig
from seqlab.training.io import atomic_write_json
from seqlab.training.device import resolve_device
from seqlab.training.loop import TrainResult
from seqlab.training.loop import train as train_loop
from seqlab.training.rundir import (RUN_FILE, default_run_dir, find_run_dir, latest_checkpoint, read_run_json,
                                    resolve_checkpoint, run_family)
from seqlab.validation import check_choice, fail

PathLike = str | os.PathLike
# names every family's options share with the registry itself
RESERVED = ("preset", "out", "progress", "resume", "config", "quiet", "run")
TRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig))
# the lecture's order: families are listed section by section (then by name)
SECTION_ORDER = ("recurrent", "energy", "generative", "transformer", "llm", "tasks")


@dataclass(frozen=True)
class NoOptions:
    """A family without data options (or without sampling options)."""


def field_names(cls: type) -> tuple[str, ...]:
    """The field names of a dataclass, in order."""
    return tuple(f.name for f in dataclasses.fields(cls))


def make_options(cls: type, given: Mapping[str, Any], what: str) -> Any:
    """``cls(**given)`` for an options dataclass, with unknown names refused in one line."""
    names = field_names(cls)
    unknown = sorted(set(given) - set(names))
    if unknown:
        fail(what, "options among " + (", ".join(names) or "none"), "unknown " + ", ".join(unknown))
    return cls(**dict(given))


@dataclass
class RunRecord:
    """What ``load`` returns beside the model: where the weights came from and what the run
    was. ``config`` is the model's config object; ``data`` run.json's description of the
    data (``None`` for a checkpoint outside a run directory); ``files`` the extra text
    files saved with the checkpoint; ``tokenizer`` (text families) and ``extras`` (anything
    else a family restores, e.g. a classifier's labels) come from those files."""

    family: str
    config: Any
    checkpoint: Path
    step: int | None
    dir: Path | None = None
    train_config: dict | None = None
    data: dict | None = None
    files: dict[str, str] = field(default_factory=dict)
    tokenizer: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    def saved_data(self) -> dict:
        """run.json's description of the data (what ``Family.data_from_run`` rebuilds them
        from); a checkpoint directory outside its run directory has none."""
        if self.data is None:
            fail("run", "a run directory, whose run.json names the data it was trained on",
                 f"the checkpoint {str(self.checkpoint)!r} outside one")
        return self.data

    def file(self, name: str) -> str:
        """The text of the file ``name`` saved with the checkpoint (``tokenizer.json``, ...)."""
        if name not in self.files:
            fail(f"checkpoint {self.checkpoint}", f"a {name} file", "none")
        return self.files[name]


class Family:
    """One kind of model, as the tools see it. Subclass it in ``<package>/<name>_family.py``,
    set the class attributes, implement ``make_data`` and ``data_from_run`` (and whatever
    else the family has: sampling, evaluation), and call ``register(MyFamily())`` at the end
    of the file.

    Class attributes:
        name: stored in run.json and every checkpoint.
        description: one line for ``seqlab train --help``.
        model_class, config_class: the ``nn.Module`` and its frozen config dataclass (with
            ``to_dict``/``from_dict`` and an "Attributes:" docstring the flags are made from).
        data_class: a frozen dataclass of the data options (``text``, ``images``, ...).
        sample_class, evaluate_class: dataclasses of the options of ``sample`` and
            ``evaluate``; ``None`` where the family has none.
        presets: named config overrides; every family has "cpu-tiny" and its default.
        default_preset: the preset a new run uses when none is named.
        train_defaults: ``TrainConfig`` fields this family's runs start from.
        config_defaults: config fields a run sets where the model's own default differs (BERT
            runs use the fused attention); presets and options override them.
        variants: command names that fix config fields (``{"lstm": {"cell": "lstm"}}``);
            empty for one command named like the family.
        data_fields: config fields set from the data (vocab_size, channels, ...), not options.
        resume_data_options: data options a resume may give again (``text``: a moved copy
            of the same corpus; its sha256 must match).
        checkpoint: which checkpoint of a run ``load`` takes, "best" or "latest".
        metric: what the validation loss is, for summaries.
        views: other commands that apply to its runs ("attention", "fill", "classify").
        legacy_fields, legacy_weights: config fields and weight names renamed since seqlab
            0.1 (old -> new), translated when an old run is loaded or resumed.
        flag_aliases: extra command-line flags that set an option to a value
            (``{"cd": ("persistent", False, "help")}`` makes ``--cd`` mean ``--no-persistent``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    model_class: ClassVar[type]
    config_class: ClassVar[type]
    data_class: ClassVar[type] = NoOptions
    sample_class: ClassVar[type | None] = None
    evaluate_class: ClassVar[type | None] = None
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    default_preset: ClassVar[str] = "cpu-small"
    train_defaults: ClassVar[Mapping[str, Any]] = {}
    config_defaults: ClassVar[Mapping[str, Any]] = {}
    variants: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    data_fields: ClassVar[tuple[str, ...]] = ()
    resume_data_options: ClassVar[tuple[str, ...]] = ()
    checkpoint: ClassVar[str] = "best"
    metric: ClassVar[str] = "validation loss"
    views: ClassVar[tuple[str, ...]] = ()
    legacy_fields: ClassVar[Mapping[str, str]] = {}
    legacy_weights: ClassVar[Mapping[str, str]] = {}
    flag_aliases: ClassVar[Mapping[str, tuple[str, Any, str]]] = {}

    # ------------------------------------------------------------------ names

    def commands(self) -> dict[str, dict[str, Any]]:
        """Command name -> the config fields it fixes."""
        return {k: dict(v) for k, v in self.variants.items()} or {self.name: {}}

    def variant_of(self, config: Mapping[str, Any]) -> str:
        """The command that trains a run of this config (``lstm`` for a charlm with cell lstm)."""
        for command, fixed in self.commands().items():
            if all(config.get(k) == v for k, v in fixed.items()):
                return command
        return self.name

    def model_options(self, command: str | None = None) -> tuple[str, ...]:
        """Config fields a user may set (for ``command``: without the fields it fixes)."""
        fixed = self.commands().get(command, {}) if command is not None else {}
        return tuple(n for n in field_names(self.config_class) if n not in self.data_fields and n not in fixed)

    def data_options(self) -> tuple[str, ...]:
        return field_names(self.data_class)

    # ------------------------------------------------------------------ data (to implement)

    def make_data(self, options: Any, fields: Mapping[str, Any], train_config: TrainConfig) -> Any:
        """The data of a new run from the data options (an instance of ``data_class``);
        ``fields`` are the config fields chosen so far (preset and options: a GPT's windows
        are as long as its context, ``block_size``)."""
        raise NotImplementedError

    def data_from_run(self, run: RunRecord, options: Mapping[str, Any]) -> Any:
        """The data of a saved run (to resume or evaluate it), from ``run.data`` and
        ``run.files``; ``options`` holds the ``resume_data_options`` given again."""
        raise NotImplementedError

    def data_info(self, data: Any) -> dict:
        """The data's description in run.json (must name everything ``data_from_run`` needs)."""
        return data.info()

    def training_data(self, data: Any) -> Any:
        """What the trainer draws batches from (``get_batch(split, B, generator)``)."""
        return data

    def files(self, data: Any) -> dict[str, str]:
        """Extra text files every checkpoint carries (``{"tokenizer.json": ...}``)."""
        return {}

    # ------------------------------------------------------------------ model

    def config_from_data(self, data: Any, train_config: TrainConfig) -> dict[str, Any]:
        """Config fields the data decide (``data_fields``); any other field returned is a
        default that presets and options override (an RBM's chains: one per batch item)."""
        return {}

    def train_defaults_for(self, data: Any) -> Mapping[str, Any]:
        """``TrainConfig`` defaults that depend on the run's data (a control environment's
        learning rate), over ``train_defaults`` and under the options given. They apply once
        the data are made, so they must not be settings ``make_data`` reads."""
        return {}

    def train_config_for(self, data: Any, fields: Mapping[str, Any], train_config: TrainConfig) -> TrainConfig:
        """The training settings of a new run, once its data are made: ``train_config``
        unchanged, or a copy where the data decide a setting (a control run's length in
        environment steps decides its number of updates). run.json records the result, so a
        resume keeps it."""
        return train_config

    def fields_fixed_by(self, data: Any) -> tuple[str, ...]:
        """The fields of ``config_from_data`` that this run's data decide, over presets and
        options: ``data_fields``, and for some data more (a fine-tune from a pretrained
        model takes its size; an option that names another size is refused)."""
        return self.data_fields

    def make_config(self, fields: Mapping[str, Any]) -> Any:
        return self.config_class(**dict(fields))

    def build(self, config: Any) -> nn.Module:
        """A model with fresh weights."""
        return self.model_class(config)

    def new_model(self, config: Any, data: Any) -> nn.Module:
        """The model a new run starts from (``build``; a fine-tune starts from pretrained
        weights). Called under ``torch.manual_seed(seed)``."""
        return self.build(config)

    def extras(self, run: RunRecord) -> None:
        """Restore what the checkpoint's files hold into ``run`` (``run.tokenizer``, ...)."""

    def on_eval(self, model: nn.Module, run_dir: Path, data: Any):
        """A function of the step called after every evaluation (sample grids), or None."""
        return None

    # ------------------------------------------------------------------ use

    def summary(self, result: TrainResult) -> str:
        if result.best_val_loss is None:
            return f"{result.steps} steps, no evaluation"
        return (f"{self.metric} {result.best_val_loss:.4f} (best), {result.steps} steps in "
                f"{result.seconds:.0f} s")

    def report(self, model: nn.Module, run: RunRecord) -> list[str]:
        """Lines ``seqlab train`` prints after training (a sample, an evaluation...)."""
        return []

    def sample(self, model: nn.Module, run: RunRecord, options: Any, *, on_text=None) -> Any:
        """What the family makes from ``options`` (an instance of ``sample_class``). A family
        that samples text takes ``on_text``: a function called with each new piece of text as it
        is generated (``seqlab sample`` prints them at once); others may leave it out of their
        signature, and are then not given it."""
        fail("sample", "a run of a family that samples", f"a {self.name!r} run")

    def format_sample(self, result: Any, options: Any) -> str:
        return str(result)

    def evaluate(self, model: nn.Module, run: RunRecord, options: Any) -> Any:
        """An object with ``table() -> str`` and ``to_json() -> dict``."""
        fail("evaluate", "a run of a family with an evaluation", f"a {self.name!r} run")

    # ------------------------------------------------------------------ seqlab 0.1 runs

    def upgrade_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A saved config dict with the fields renamed since seqlab 0.1 given their new names."""
        out = dict(config)
        for old, new in self.legacy_fields.items():
            if old in out and new not in out:
                out[new] = out.pop(old)
        return out

    def upgrade_checkpoint(self, ckpt: Checkpoint) -> Checkpoint:
        ckpt.config = self.upgrade_config(ckpt.config)
        if self.legacy_weights:
            ckpt.state_dict = {_rename(k, self.legacy_weights): v for k, v in ckpt.state_dict.items()}
        return ckpt


def _rename(key: str, renames: Mapping[str, str]) -> str:
    """A state-dict key with a renamed parameter (the last dotted part) given its new name."""
    head, _, last = key.rpartition(".")
    new = renames.get(last, last)
    return f"{head}.{new}" if head else new


# --------------------------------------------------------------------------- the registry

_FAMILIES: dict[str, Family] = {}
_COMMANDS: dict[str, tuple[Family, dict[str, Any]]] = {}
_REGISTERED: dict[str, int] = {}  # family name -> when it was first registered (a file's families in its order)
_DISCOVERED = False


def register(family: Family) -> Family:
    """Add a family (called at the end of its ``*_family.py`` file). Its names must not clash
    with another family's, and its option names (config, data, training) must be distinct."""
    if not isinstance(family, Family):
        fail("register", "a Family instance", type(family).__name__)
    name = getattr(family, "name", None)
    if not isinstance(name, str) or not name:
        fail("family name", "a non-empty string", repr(name))
    if name in _FAMILIES and type(_FAMILIES[name]) is not type(family):
        fail("family name", "a name no other family has", repr(name))
    for cls_name in ("config_class", "data_class"):
        if not dataclasses.is_dataclass(getattr(family, cls_name, None)):
            fail(f"{name}.{cls_name}", "a dataclass", repr(getattr(family, cls_name, None)))
    if family.presets and family.default_preset not in family.presets:
        fail(f"{name}.default_preset", "one of its presets " + ", ".join(family.presets), repr(family.default_preset))
    if family.presets and "cpu-tiny" not in family.presets:
        fail(f"{name}.presets", "a 'cpu-tiny' preset", ", ".join(family.presets))
    groups = {"config": family.model_options(), "data": family.data_options(), "training": TRAIN_FIELDS,
              "reserved": RESERVED}
    seen: dict[str, str] = {}
    for group, names in groups.items():
        for n in names:
            if n in seen:
                fail(f"{name} options", "distinct names", f"{n!r} both a {seen[n]} and a {group} option")
            seen[n] = group
    for command in family.commands():
        owner = _COMMANDS.get(command)
        if owner is not None and owner[0].name != name:
            fail("family command", "a name no other family uses", f"{command!r} (already {owner[0].name})")
    _FAMILIES[name] = family
    _REGISTERED.setdefault(name, len(_REGISTERED))
    for command, fixed in family.commands().items():
        _COMMANDS[command] = (family, fixed)
    return family


def _section_key(package: str) -> tuple[int, str]:
    return (SECTION_ORDER.index(package) if package in SECTION_ORDER else len(SECTION_ORDER), package)


def _module_key(module: str) -> tuple[int, int, str, str]:
    """Where a family file sorts: seqlab's packages in the lecture's order, each file by
    name; families from outside seqlab last."""
    parts = module.split(".")
    if len(parts) == 3 and parts[0] == "seqlab":
        return (0, *_section_key(parts[1]), parts[2].removesuffix("_family").replace("_", "-"))
    return (1, 0, "", module)


def discover() -> None:
    """Import every ``seqlab/<package>/*_family.py`` once (each registers its family)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import seqlab

    root = Path(seqlab.__file__).parent
    packages = sorted((p for p in root.iterdir() if (p / "__init__.py").is_file()),
                      key=lambda p: _section_key(p.name))
    for pkg in packages:
        names = [m.name for m in pkgutil.iter_modules([str(pkg)]) if m.name.endswith("_family")]
        for name in sorted(names, key=lambda n: n.removesuffix("_family").replace("_", "-")):
            importlib.import_module(f"seqlab.{pkg.name}.{name}")


def _ordered(items: dict[str, Any], family_of) -> dict[str, Any]:
    """``items`` in the lecture's order of their families' files, the families of one file in
    the order it registers them (stable within a family), whatever order the files were
    imported in."""
    order = {id(f): i for i, f in enumerate(sorted(
        _FAMILIES.values(), key=lambda f: (_module_key(type(f).__module__), _REGISTERED.get(f.name, 0))))}
    return dict(sorted(items.items(), key=lambda kv: order.get(id(family_of(kv[1])), len(order))))


def families() -> dict[str, Family]:
    """Every registered family by name, in the lecture's order."""
    discover()
    return _ordered(_FAMILIES, lambda f: f)


def commands() -> dict[str, tuple[Family, dict[str, Any]]]:
    """Every command name of ``seqlab train`` -> (family, the config fields it fixes), in the
    lecture's order."""
    discover()
    return _ordered(_COMMANDS, lambda v: v[0])


def get_family(name: str) -> Family:
    """The family of a family name or command name (``"charlm"`` or ``"lstm"``)."""
    discover()
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name in _COMMANDS:
        return _COMMANDS[name][0]
    fail("family", "one of " + ", ".join(sorted(set(_COMMANDS) | set(_FAMILIES))), repr(name))


def families_with(view: str) -> list[str]:
    """Names of the families whose runs ``view`` applies to ("attention", "sample", ...)."""
    out = []
    for name, fam in families().items():
        has = {"sample": fam.sample_class is not None, "evaluate": fam.evaluate_class is not None}.get(
            view, view in fam.views)
        if has:
            out.append(name)
    return out


# --------------------------------------------------------------------------- options


def split_options(family: Family, command: str | None, options: Mapping[str, Any]
                  ) -> tuple[dict, dict, dict]:
    """(model, data, training) options from one flat mapping; an unknown name is refused in
    one line that lists the names this family takes."""
    model_names, data_names = family.model_options(command), family.data_options()
    model, data, train, unknown = {}, {}, {}, []
    for k, v in options.items():
        if k in model_names:
            model[k] = v
        elif k in data_names:
            data[k] = v
        elif k in TRAIN_FIELDS:
            train[k] = v
        else:
            unknown.append(k)
    if unknown:
        fixed = family.commands().get(command, {}) if command else {}
        hint = f" ({', '.join(sorted(set(unknown) & set(fixed)))} fixed by {command!r})" if set(unknown) & set(fixed) \
            else ""
        fail(f"{command or family.name} options",
             "names among " + ", ".join(sorted(model_names + data_names)) + " and the training options",
             "unknown " + ", ".join(sorted(unknown)) + hint)
    return model, data, train


def train(command: str, *, preset: str | None = None, out: PathLike | None = None, progress: bool = True,
          **options: Any) -> TrainResult:
    """Train a new run of ``command`` (a family or variant name: ``"lstm"``, ``"gpt"``,
    ``"vae"``, ...). ``options`` are the family's config fields, data options and
    ``TrainConfig`` fields, by name; ``preset`` a named size (default: the family's);
    ``out`` the run directory (default ``runs/COMMAND-DATE-TIME``). Returns the trainer's
    result, whose ``run_dir`` is where everything went."""
    family = get_family(command)
    fixed = family.commands().get(command, {})
    model_opts, data_opts, train_opts = split_options(family, command if command in family.commands() else None,
                                                      options)
    if family.presets:
        check_choice(family.default_preset if preset is None else preset, "preset", family.presets)
    elif preset is not None:
        fail("preset", f"nothing ({family.name} has no presets)", repr(preset))
    cfg = TrainConfig.from_dict({**family.train_defaults, **train_opts})
    fields = {**family.config_defaults, **family.presets.get(preset or family.default_preset, {}), **fixed,
              **model_opts}
    data = family.make_data(make_options(family.data_class, data_opts, f"{command} data"), fields, cfg)
    by_data = family.train_defaults_for(data)
    if by_data:
        cfg = TrainConfig.from_dict({**family.train_defaults, **by_data, **train_opts})
    cfg = family.train_config_for(data, fields, cfg)
    derived = family.config_from_data(data, cfg)
    # the data decide its data_fields (and, for some data, more); anything else it returns is
    # a default the options override
    decided = family.fields_fixed_by(data)
    clash = sorted(k for k in decided if k in model_opts and k in derived and model_opts[k] != derived[k])
    if clash:
        fail(f"{command} options", "the values the data decide here (" + ", ".join(
            f"{k}={derived[k]!r}" for k in clash) + ")", ", ".join(f"{k}={model_opts[k]!r}" for k in clash))
    config = family.make_config({**{k: v for k, v in derived.items() if k not in decided}, **fields,
                                 **{k: v for k, v in derived.items() if k in decided}})
    check_memory(family, config, training=True, device=cfg.device, batch_size=cfg.batch_size)
    torch.manual_seed(cfg.seed)  # the initial weights depend on the run's seed only
    model = family.new_model(config, data)
    run_dir = Path(out) if out is not None else default_run_dir(command)
    return train_loop(model, family.training_data(data), cfg, run_dir, family=family.name,
                      model_config=config.to_dict(), files=family.files(data), progress=progress,
                      data_info=family.data_info(data), on_eval=family.on_eval(model, run_dir, data),
                      upgrade=family.upgrade_checkpoint)


def resume(run_dir: PathLike, *, progress: bool = True, **options: Any) -> TrainResult:
    """Continue a run where it stopped. Options given must equal the saved ones (the trainer
    names any that differ), except device, precision, log_every and max_seconds (a wall-clock
    budget belongs to one invocation: a resumed run has none unless given again) and the
    family's ``resume_data_options``."""
    run_dir = Path(run_dir)
    family = get_family(run_family(run_dir))
    saved = _upgrade_run_json(family, run_dir)
    model_opts, data_opts, train_opts = split_options(family, None, options)
    extra = sorted(set(data_opts) - set(family.resume_data_options))
    if extra:
        allowed = ", ".join(family.resume_data_options) or "none"
        fail("resume", f"no data options but {allowed} (the run's data are kept)", ", ".join(extra))
    ckpt_path = latest_checkpoint(run_dir)
    if ckpt_path is None:
        fail("resume", "a run directory holding a checkpoint", f"{str(run_dir)!r}, which holds none")
    run, ckpt_config = _record(family, load_checkpoint(ckpt_path, family=family.name), run_dir, saved)
    config = family.config_class.from_dict(saved["model_config"])
    given = {**(saved.get("train_config") or {}), **train_opts}
    batch_size = given.get("batch_size")
    # run.json's config is built, the checkpoint's compared with it: neither may be too large
    for c in [config] + ([ckpt_config] if ckpt_config != config else []):
        check_memory(family, c, training=True, device=given.get("device", "cpu"),
                     batch_size=batch_size if isinstance(batch_size, int) and not isinstance(batch_size, bool)
                     and batch_size > 0 else None)
    data = family.data_from_run(run, data_opts)
    requested = {**saved["model_config"], **model_opts}  # compared with the saved config by the trainer
    saved_train = {k: v for k, v in (saved.get("train_config") or {}).items() if k != "max_seconds"}
    cfg = TrainConfig.from_dict({**saved_train, **train_opts})
    model = family.build(config)  # the checkpoint's weights replace these
    return train_loop(model, family.training_data(data), cfg, run_dir, family=family.name, model_config=requested,
                      files=family.files(data), resume=True, progress=progress, data_info=family.data_info(data),
                      on_eval=family.on_eval(model, run_dir, data), upgrade=family.upgrade_checkpoint)


def check_memory(family: Family, config: Any, *, training: bool, device: Any = "cpu",
                 batch_size: int | None = None) -> None:
    """Refuse, before anything is allocated, a model of ``config`` that does not fit in memory
    (``seqlab.memory``: built on the meta device, its parameters and buffers, and when
    ``training`` its gradients, AdamW's state and, where the model class can tell them
    (``activation_bytes(config, batch_size)``), a step's activations, against the memory
    available on the CPU and on ``device``). One check for every family, wherever a run's
    model is built."""
    try:
        device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    except (ValueError, TypeError, RuntimeError):
        device = torch.device("cpu")  # a device that is not here: the trainer or the loader says so
    estimate = getattr(family.model_class, "activation_bytes", None)
    activations = (lambda c: estimate(c, batch_size)) if callable(estimate) and batch_size is not None else None
    check_model_fits(family.build, config, training=training, device=device, activations=activations,
                     batch=f"batch_size={batch_size}")


def _upgrade_run_json(family: Family, run_dir: Path) -> dict:
    """run.json, with the model config's fields renamed since seqlab 0.1 given their new
    names (written back atomically, so the trainer's comparison sees today's names)."""
    saved = read_run_json(run_dir)
    if not isinstance(saved.get("model_config"), dict):
        fail(f"run file {run_dir / RUN_FILE}", "a model_config object", repr(saved.get("model_config")))
    upgraded = family.upgrade_config(saved["model_config"])
    if upgraded != saved["model_config"]:
        saved = {**saved, "model_config": upgraded}
        atomic_write_json(run_dir / RUN_FILE, saved)
    return saved


def _record(family: Family, ckpt: Checkpoint, run_dir: Path | None, saved: dict | None
            ) -> tuple[RunRecord, Any]:
    ckpt = family.upgrade_checkpoint(ckpt)
    config = family.config_class.from_dict(ckpt.config)
    run = RunRecord(family=family.name, config=config, checkpoint=ckpt.path, step=ckpt.step, dir=run_dir,
                    train_config=(saved or {}).get("train_config"), data=(saved or {}).get("data"),
                    files=dict(ckpt.files))
    family.extras(run)
    return run, config


def _run_dir_of(path: Path) -> Path | None:
    try:
        return find_run_dir(path)
    except ValueError:
        return None


def load(path: PathLike, *, map_location: str | torch.device = "cpu") -> tuple[nn.Module, RunRecord]:
    """The model of a run directory (its best checkpoint, else the latest; a family may ask
    for the latest) or of a checkpoint directory, in eval mode on ``map_location``, and its
    ``RunRecord``. Only JSON and safetensors are read: nothing is unpickled."""
    path = Path(path)
    family = get_family(run_family(path))
    where = resolve_checkpoint(path)
    if family.checkpoint == "latest" and (path / RUN_FILE).is_file():
        where = latest_checkpoint(path) or where
    ckpt = load_checkpoint(where, family=family.name, map_location=map_location)
    run_dir = _run_dir_of(where)
    saved = read_run_json(run_dir) if run_dir is not None else None
    run, config = _record(family, ckpt, run_dir, saved)
    check_memory(family, config, training=False, device=map_location)
    model = family.build(config)
    load_weights(model, ckpt)
    model.to(map_location).eval()
    return model, run


def _use(path: PathLike, view: str, verb: str, options: Mapping[str, Any]) -> Any:
    """Load the run at ``path`` and call its family's ``view`` ("sample", "evaluate") with the
    options of its ``{view}_class``; a family without one is refused in one line."""
    model, run = load(path)
    family = get_family(run.family)
    options_class = getattr(family, f"{view}_class")
    if options_class is None:
        what = {"sample": "that samples", "evaluate": "with an evaluation"}[view]
        fail(verb, f"a run of a family {what} (" + ", ".join(families_with(view)) + ")", f"a {run.family!r} run")
    return getattr(family, view)(model, run, make_options(options_class, options, f"{run.family} {verb}"))


def sample(path: PathLike, **options: Any) -> Any:
    """What the family's sampler makes from the run at ``path`` (text, images ...); options
    by name, as ``seqlab sample`` takes them."""
    return _use(path, "sample", "sample", options)


def evaluate(path: PathLike, **options: Any) -> Any:
    """The family's evaluation of the run at ``path`` (an object with ``table()`` and
    ``to_json()``)."""
    return _use(path, "evaluate", "eval", options)


__all__ = ["Family", "NoOptions", "RunRecord", "check_memory", "commands", "evaluate", "families", "families_with",
           "field_names", "get_family", "load", "make_options", "register", "resume", "sample", "split_options",
           "train"]
