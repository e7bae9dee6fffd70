"""Command-line flags made from dataclasses (seqlab/cli/options.py): the help read from the
"Attributes:" docstrings, variant tags, the flag types, --config files and number lists."""

import dataclasses
from dataclasses import dataclass

import pytest

from seqlab import runs
from seqlab.cli import Parser, main
from seqlab.cli.options import (add_fields, applies_to, field_docs, first_sentence, given, number_list,
                                read_config_file)
from seqlab.training.config import TrainConfig


@dataclass(frozen=True)
class Base:
    """A base.

    Attributes:
        alpha: the first field. A second sentence
            that goes on.
        beta1, beta2: two coefficients
        gamma: a long help that wraps
            onto the next line, and a line: with a colon
    Notes:
        delta: not an attribute (after the section)
    """

    alpha: int = 1
    beta1: float = 0.9
    beta2: float = 0.99
    gamma: str = "g"


@dataclass(frozen=True)
class Child(Base):
    """A child.

    Attributes:
        alpha: overridden help
        only: (rnn, gru) for two variants
        tagged: (persistent) not a variant: part of the help
    """

    only: str = "x"
    tagged: int = 3


def test_field_docs_reads_the_attributes_sections():
    docs = field_docs(Base)
    assert docs == {"alpha": "the first field. A second sentence that goes on.",
                    "beta1": "two coefficients", "beta2": "two coefficients",
                    "gamma": "a long help that wraps onto the next line, and a line: with a colon"}
    child = field_docs(Child)  # the bases' entries, overridden by the class's own
    assert child["alpha"] == "overridden help" and child["beta2"] == "two coefficients"
    assert child["only"] == "(rnn, gru) for two variants" and "delta" not in child
    assert field_docs(dataclasses.make_dataclass("Bare", [("x", int)])) == {}


@pytest.mark.parametrize("text, first", [
    ("the first field. A second sentence", "the first field"),
    ("ends with a full stop.", "ends with a full stop"),
    ("``None``: no limit. More", "None: no limit"),
    ("width of the MLP (None: 4 D). Then (more)", "width of the MLP (None: 4 D)"),
    ("e.g. 3. the rest in lower case", "e.g. 3. the rest in lower case"),
    ("0 < p <= 1, a value. (An aside)", "0 < p <= 1, a value"),
    ("", ""),
])
def test_first_sentence(text, first):
    assert first_sentence(text) == first


def test_variant_tags():
    variants = ("rnn", "lstm", "gru")
    assert applies_to("(rnn) tanh or relu", "rnn", variants) == (True, "tanh or relu")
    assert applies_to("(rnn) tanh or relu", "lstm", variants) == (False, "tanh or relu")
    assert applies_to("(rnn, gru) both", "gru", variants) == (True, "both")
    assert applies_to("(rnn) tanh or relu", None, variants) == (True, "tanh or relu")  # every variant's flags
    # parentheses that are not a list of the family's variants are part of the help
    assert applies_to("(persistent) chains", "rbm", ()) == (True, "(persistent) chains")
    assert applies_to("(rnn, persistent) x", "lstm", variants) == (True, "(rnn, persistent) x")
    assert applies_to("no tag", "lstm", variants) == (True, "no tag")
    p = Parser(prog="t")
    assert add_fields(p, Child, ["only", "tagged"], command="lstm", variants=variants) == ["tagged"]
    p = Parser(prog="t")
    assert add_fields(p, Child, ["only", "tagged"], command="gru", variants=variants) == ["only", "tagged"]


def test_variant_tags_in_the_generated_help(capsys):
    def help_of(argv):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        return " ".join(capsys.readouterr().out.split())

    assert "--nonlinearity" in help_of(["train", "rnn"])
    assert "--nonlinearity" not in help_of(["train", "lstm"]) and "--nonlinearity" not in help_of(["train", "gru"])
    rbm = help_of(["train", "rbm"])  # "(persistent)" is not one of rbm's variants: its help keeps it
    assert "--n-chains N_CHAINS (persistent) the number of persistent chains (default in a run: one per batch " \
           "item, as in scikit-learn)" in rbm
    assert "--cd CD-k: each update's chains start at the data (= --no-" in rbm  # (argparse may wrap at the dash)


@dataclass(frozen=True)
class Opts:
    """Options of every type.

    Attributes:
        count: an int
        rate: a float
        limit: an optional int
        scale: an optional float
        name: an optional text
        word: a text
        sizes: channels, comma-separated
        flag: a switch
        stop: repeat for several
        share: 10% of it (a percent sign in the help)
        told: with its own default 5 in the text
    """

    count: int = 3
    rate: float = 0.5
    limit: int | None = None
    scale: float | None = 1.0
    name: str | None = "x"
    word: str = "w"
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = True
    stop: tuple[str, ...] = ()
    share: float = 0.1
    told: int = 5


NAMES = [f.name for f in dataclasses.fields(Opts)]


def _parser(**kwargs) -> Parser:
    p = Parser(prog="t")
    assert add_fields(p, Opts, NAMES, **kwargs) == NAMES
    return p


def test_flag_types():
    p = _parser()
    assert given(p.parse_args([]), NAMES) == {}  # only what the command line gives
    args = p.parse_args(["--count", "4", "--rate", "1e-3", "--limit", "none", "--scale", "None", "--name", "none",
                         "--word", "none", "--sizes", "1,2,4", "--no-flag", "--stop", "a", "--stop", "b c"])
    assert given(args, NAMES) == {"count": 4, "rate": 0.001, "limit": None, "scale": None, "name": None,
                                  "word": "none", "sizes": (1, 2, 4), "flag": False, "stop": ("a", "b c")}
    assert given(p.parse_args(["--limit", "7", "--scale", "2", "--flag", "--name", "y"]), NAMES) == \
        {"limit": 7, "scale": 2.0, "flag": True, "name": "y"}


@pytest.mark.parametrize("argv, message", [
    (["--count", "2.5"], "argument --count: expected an integer, received '2.5'"),
    (["--count", "none"], "argument --count: expected an integer, received 'none'"),
    (["--rate", "fast"], "argument --rate: expected a number, received 'fast'"),
    (["--limit", "x"], "argument --limit: expected an integer or none, received 'x'"),
    (["--scale", "x"], "argument --scale: expected a number or none, received 'x'"),
    (["--sizes", "1,a"], "argument --sizes: expected comma-separated integers, received '1,a'"),
    (["--sizes", ","], "argument --sizes: expected comma-separated integers, received ','"),
    (["--no-flag", "x"], "unrecognized arguments: x"),
    (["--coun", "4"], "unrecognized arguments: --coun 4"),  # no abbreviations
])
def test_flag_type_errors_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        _parser().parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"t: error: {message} (see t --help)"


def test_help_shows_the_defaults(capsys):
    p = _parser(defaults={"count": 7})
    with pytest.raises(SystemExit):
        p.parse_args(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--count COUNT an int (default: 7)" in out  # a default given (a preset's) wins
    assert "--limit LIMIT an optional int (default: none)" in out
    assert "--sizes N,N,... channels, comma-separated (default: 1,2)" in out
    assert "--flag, --no-flag a switch (default: on)" in out
    assert "--stop STOP repeat for several (default: none)" in out
    assert "--share SHARE 10% of it (a percent sign in the help) (default: 0.1)" in out
    assert "--told TOLD with its own default 5 in the text" in out and "(default: 5)" not in out


def test_a_field_without_help_is_refused():
    @dataclass(frozen=True)
    class Undocumented:
        """Attributes:
            a: documented
        """

        a: int = 1
        b: int = 2

    with pytest.raises(ValueError, match=r"^Undocumented\.b: expected a line in the class's Attributes: docstring "
                                         r"\(the flag's help\), received none$"):
        add_fields(Parser(prog="t"), Undocumented, ["a", "b"])


def test_every_option_of_every_family_has_help():
    """A new field without an Attributes entry fails here (and would fail the flags' making)."""
    classes = {TrainConfig}
    for family in runs.families().values():
        classes |= {c for c in (family.config_class, family.data_class, family.sample_class,
                                family.evaluate_class) if c is not None}
    missing = [f"{cls.__name__}.{f.name}" for cls in sorted(classes, key=lambda c: c.__name__)
               for f in dataclasses.fields(cls) if not field_docs(cls).get(f.name)]
    assert missing == []
    assert len(classes) >= 10


def test_read_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('lr = 0.1\n[model]\nhidden-size = 8\n[data]\ntext = "a.txt"\n[train]\nmax_steps = 3\n'
                 'channel_mults = [1, 2]\n')
    assert read_config_file(str(f)) == {"lr": 0.1, "hidden_size": 8, "text": "a.txt", "max_steps": 3,
                                        "channel_mults": (1, 2)}
    other = tmp_path / "o.toml"  # another table is kept as one (unknown) name: the family refuses it
    other.write_text("[optim]\nlr = 0.1\n")
    assert read_config_file(str(other)) == {"optim": {"lr": 0.1}}


def test_read_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"^--config: expected an existing TOML file, received '.*nope\.toml' "
                                         r"\(no such file\)$"):
        read_config_file(str(tmp_path / "nope.toml"))
    with pytest.raises(ValueError, match=r"^--config: expected a TOML file, received '.*' \(a directory\)$"):
        read_config_file(str(tmp_path))
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3\n")
    with pytest.raises(ValueError, match=r"^--config: expected valid TOML, received '.*bad\.toml' \(.*line 1.*\)$"):
        read_config_file(str(bad))


def test_number_list():
    assert number_list("1,2,4", "--hidden", int) == [1, 2, 4]
    assert number_list(" 0.5, 1 ,", "--scales", float) == [0.5, 1.0]
    for text, kind, want in [("", int, "comma-separated integers"), (" , ", int, "comma-separated integers"),
                             ("1,x", int, "comma-separated integers"), ("1.5", int, "comma-separated integers"),
                             ("a", float, "comma-separated numbers")]:
        with pytest.raises(ValueError, match=rf"^--opt: expected {want}, received {text!r}$"):
            number_list(text, "--opt", kind)


def test_number_list_from_the_command_line(tmp_path, capsys):
    assert main(["boltzmann", "--hidden", "1,x", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "seqlab: error: --hidden: expected comma-separated integers, " \
                                              "received '1,x'"
