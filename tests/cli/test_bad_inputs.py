"""Bad input to every command, in one table: each case must end with exit status 2 and one line
on stderr that names the problem (no traceback), and leave every file of the good runs (and of
the inputs the commands read) as it was, with nothing written in the working folder.

The runs are trained once for the module at the smallest size (an LSTM, a GPT, a BERT, a VAE);
the corrupt ones are copies of them, edited. Everything runs in-process (``seqlab.cli.main``).

Read-only locations: the tests may run as root, for whom ``chmod`` makes nothing read-only.
``/sys`` (sysfs) refuses new files even to root, so on Linux it stands for a read-only folder;
elsewhere a folder with mode 0555 does (skipped where that is still writable, i.e. root). A run
directory cannot live under /sys, so the read-only run of ``--resume`` is simulated by making
``os.access`` say "not writable" for it (what it says for a normal user on a read-only folder).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from seqlab.cli import main
from seqlab.testing import snapshot
from seqlab.testing import png_claiming

GOOD_RUNS = ("lstm", "gpt", "bert", "vae")
TINY = ["--max-steps", "2", "--eval-every", "2", "--eval-batches", "1", "--batch-size", "2", "--quiet"]
CK = "checkpoints/step-00000002"  # the checkpoint of each good run




def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _corrupt(area: Path) -> None:
    """Copies of the good runs, each broken in one way."""
    c = area / "corrupt"

    def copy(name: str, src: str = "lstm") -> Path:
        return Path(shutil.copytree(area / src, c / name))

    f = copy("config_truncated") / CK / "config.json"
    f.write_text(f.read_text()[:40])
    _edit_json(copy("config_hidden_size") / CK / "config.json", lambda j: j["config"].update(hidden_size=7))
    _edit_json(copy("config_negative") / CK / "config.json", lambda j: j["config"].update(hidden_size=-7))
    _edit_json(copy("config_text") / CK / "config.json", lambda j: j["config"].update(hidden_size="big"))
    _edit_json(copy("config_unknown_field") / CK / "config.json", lambda j: j["config"].update(zzz=1))
    _edit_json(copy("config_manifest") / CK / "config.json", lambda j: j.update(manifest="x"))
    (copy("config_binary") / CK / "config.json").write_bytes(b"\xff\xfe\x00")
    f = copy("run_truncated") / "run.json"
    f.write_text(f.read_text()[:30])
    _edit_json(copy("run_family") / "run.json", lambda j: j.update(family="nosuch"))
    (copy("run_list") / "run.json").write_text("[1, 2]")
    (copy("run_empty") / "run.json").write_text("")
    f = copy("weights_truncated") / CK / "model.safetensors"
    f.write_bytes(f.read_bytes()[:100])
    f = copy("weights_flipped") / CK / "model.safetensors"
    b = bytearray(f.read_bytes())
    b[-5] ^= 0xFF
    f.write_bytes(bytes(b))
    (copy("weights_missing") / CK / "model.safetensors").unlink()
    (copy("tokenizer_missing") / CK / "tokenizer.json").unlink()
    f = copy("tokenizer_truncated") / CK / "tokenizer.json"
    f.write_text(f.read_text()[:50])
    shutil.rmtree(copy("no_checkpoint") / CK)
    d = copy("config_is_a_folder") / CK
    (d / "config.json").unlink()
    (d / "config.json").mkdir()
    _edit_json(copy("gpt_config_nan", "gpt") / CK / "config.json", lambda j: j["config"].update(dropout=float("nan")))
    _edit_json(copy("gpt_config_huge", "gpt") / CK / "config.json", lambda j: j["config"].update(block_size=10**12))
    _edit_json(copy("vae_config_huge", "vae") / CK / "config.json", lambda j: j["config"].update(latent_size=10**9))


@pytest.fixture(scope="module")
def area(tmp_path_factory):
    """The good runs, the corrupt copies, and input files of every kind."""
    area = tmp_path_factory.mktemp("bad_inputs")
    for family in GOOD_RUNS:
        assert main(["train", family, "--preset", "cpu-tiny", *TINY, "--out", str(area / family)]) == 0
    _corrupt(area)
    inputs = area / "inputs"
    inputs.mkdir()
    (inputs / "file.txt").write_text("a file that must stay as it is\n")
    (inputs / "folder").mkdir()
    (inputs / "empty_folder").mkdir()
    (inputs / "empty.txt").write_text("")
    (inputs / "binary.txt").write_bytes(b"\xff\xfe\x00 not UTF-8")
    (inputs / "short.txt").write_text("hello world")
    (inputs / "bad_syntax.toml").write_text("hidden_size = \n")
    (inputs / "bad_type.toml").write_text('hidden_size = "x"\n')
    (inputs / "unknown.toml").write_text("nosuch = 3\n")
    (inputs / "nan.toml").write_text("[model]\nhidden_size = nan\n")
    (inputs / "bomb").mkdir()
    (inputs / "bomb" / "big.png").write_bytes(png_claiming(30000, 30000))  # 900 million pixels claimed
    (inputs / "junk").mkdir()
    (inputs / "junk" / "x.png").write_bytes(b"not a png")
    (area / "cwd").mkdir()
    return area


def _readonly_folder(area: Path) -> str:
    """A folder no file can be created in, even by root (see the module docstring)."""
    from seqlab.paths import why_not_writable

    if Path("/sys").is_dir() and why_not_writable(Path("/sys")) is not None:
        return "/sys"
    folder = area / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    if why_not_writable(folder) is None:
        pytest.skip("no read-only folder here (root on a system without /sys)")
    return str(folder)


@pytest.fixture(scope="module")
def before(area):
    """The sha256 of every file of the good runs and the inputs, before any bad command."""
    return {name: snapshot(area / name) for name in (*GOOD_RUNS, "inputs")}


def T(command: str, *args: str) -> list[str]:
    """``seqlab train COMMAND`` at the smallest size into a new folder, then ``args`` (later
    flags win, so a case may give --preset, --max-steps or --out itself)."""
    preset = [] if command == "bert-classifier" else ["--preset", "cpu-tiny"]
    base = ["--base", "{bert}"] if command == "bert-classifier" else []
    return ["train", command, *preset, *base, "--max-steps", "2", "--quiet", "--out", "{new}", *args]


def S(run: str, *args: str) -> list[str]:
    return ["sample", "{" + run + "}", *args]


def E(run: str, *args: str) -> list[str]:
    return ["eval", "{" + run + "}", *args]


COMMANDS = ("rnn", "lstm", "gru", "rbm", "diffusion", "gan", "vae", "bert", "bert-classifier", "gpt")

# (argv, fragments the error line must hold); {name}: a path of the fixture (see _fill)
CASES: list[tuple[list[str], list[str]]] = [
    # ------------------------------------------------------------------ the command itself
    ([], ["COMMAND"]),
    (["nosuch"], ["nosuch"]),
    (["--nosuch"], ["COMMAND"]),
    (["--nosuch", "list"], ["--nosuch"]),
    (["evaluate", "{vae}"], ["evaluate"]),
    (["list", "--bogus"], ["--bogus"]),
    (["list", "extra"], ["extra"]),
    (["train"], ["family"]),
    (["train", "nosuch"], ["nosuch"]),
]
# ---------------------------------------------------------------------- train: every command
for _c in COMMANDS:
    CASES += [
        (T(_c, "--max-steps", "0"), ["max_steps", "received 0"]),
        (T(_c, "--max-steps", "abc"), ["--max-steps", "'abc'"]),
        (T(_c, "--lr", "nan"), ["lr", "nan"]),
        (T(_c, "--batch-size", "0"), ["batch_size", "received 0"]),
        (T(_c, "--device", "nosuch"), ["device", "'nosuch'"]),
        (T(_c, "--out", "{file}"), ["--out", "file.txt"]),
        (T(_c, "--out", "{ro}/run"), ["--out", "written"]),
        (T(_c, "--out", "{file}/run"), ["--out", "file.txt"]),
    ]
    if _c != "bert-classifier":
        CASES += [(T(_c, "--preset", "nosuch"), ["--preset", "'nosuch'"])]
CASES += [
    # training options
    (T("lstm", "--max-steps", "-1"), ["max_steps", "received -1"]),
    (T("lstm", "--lr", "inf"), ["lr", "inf"]),
    (T("lstm", "--lr", "-1"), ["lr", "received -1"]),
    (T("lstm", "--lr", "abc"), ["--lr", "'abc'"]),
    (T("lstm", "--precision", "nosuch"), ["precision", "'nosuch'"]),
    (T("lstm", "--schedule", "nosuch"), ["schedule", "'nosuch'"]),
    (T("lstm", "--eval-every", "0"), ["eval_every", "received 0"]),
    (T("lstm", "--eval-batches", "0"), ["eval_batches", "received 0"]),
    (T("lstm", "--seed", "-1"), ["seed", "received -1"]),
    (T("lstm", "--seed", "99999999999999999999999"), ["seed", "99999999999999999999999"]),
    (T("lstm", "--max-seconds", "-1"), ["max_seconds", "received -1"]),
    (T("lstm", "--max-seconds", "nan"), ["max_seconds", "nan"]),
    (T("lstm", "--warmup-steps", "-1"), ["warmup_steps", "received -1"]),
    (T("lstm", "--beta1", "1"), ["beta1", "received 1"]),
    (T("lstm", "--beta2", "-1"), ["beta2", "received -1"]),
    (T("lstm", "--weight-decay", "-1"), ["weight_decay", "received -1"]),
    (T("lstm", "--clip-norm", "-1"), ["clip_norm", "received -1"]),
    (T("lstm", "--keep-last", "0"), ["keep_last", "received 0"]),
    (T("lstm", "--log-every", "0"), ["log_every", "received 0"]),
    (T("lstm", "--patience", "-1"), ["patience", "received -1"]),
    (T("lstm", "--save-every", "-1"), ["save_every", "received -1"]),
    (T("lstm", "--min-lr", "-1"), ["min_lr", "received -1"]),
    (T("lstm", "--batch-size", "-3"), ["batch_size", "received -3"]),
    (T("lstm", "--batch-size", "1000000000000"), ["memory"]),
    (T("gpt", "--batch-size", "1000000000000"), ["memory"]),
    # model options
    (T("lstm", "--hidden-size", "0"), ["hidden_size", "received 0"]),
    (T("lstm", "--hidden-size", "-5"), ["hidden_size", "received -5"]),
    (T("lstm", "--hidden-size", "ten"), ["--hidden-size", "'ten'"]),
    (T("lstm", "--hidden-size", "10000000"), ["memory"]),
    (T("lstm", "--num-layers", "0"), ["num_layers", "received 0"]),
    (T("lstm", "--block-size", "0"), ["block_size", "received 0"]),
    (T("lstm", "--block-size", "100000000"), ["block_size"]),
    (T("lstm", "--dropout", "-0.1"), ["dropout", "received -0.1"]),
    (T("lstm", "--forget-bias", "nan"), ["forget_bias", "nan"]),
    (T("lstm", "--nonlinearity", "tanh"), ["--nonlinearity"]),
    (T("rnn", "--nonlinearity", "nosuch"), ["nonlinearity", "'nosuch'"]),
    (T("gru", "--hidden-size", "-1"), ["hidden_size", "received -1"]),
    (T("gpt", "--num-heads", "3"), ["num_heads", "3"]),
    (T("gpt", "--position", "nosuch"), ["position", "'nosuch'"]),
    (T("gpt", "--d-model", "0"), ["received 0"]),
    (T("gpt", "--block-size", "0"), ["block_size", "received 0"]),
    (T("gpt", "--dropout", "1.5"), ["dropout", "1.5"]),
    (T("gpt", "--dropout", "nan"), ["dropout", "nan"]),
    (T("gpt", "--tokenizer", "nosuch"), ["tokenizer", "'nosuch'"]),
    (T("gpt", "--tokenizer", "bpe", "--vocab-size", "1"), ["vocab_size", "received 1"]),
    (T("gpt", "--bias", "yes"), ["yes"]),
    (T("bert", "--layer-norm-eps", "0"), ["layer_norm_eps", "received 0"]),
    (T("bert", "--layer-norm-eps", "-1"), ["layer_norm_eps", "received -1"]),
    (T("bert", "--num-layers", "0"), ["num_layers", "received 0"]),
    (T("rbm", "--k", "0"), ["k", "received 0"]),
    (T("rbm", "--n-chains", "0"), ["n_chains", "received 0"]),
    (T("rbm", "--init-std", "-1"), ["init_std", "received -1"]),
    (T("rbm", "--hidden-size", "0"), ["hidden_size", "received 0"]),
    (T("vae", "--latent-size", "0"), ["latent_size", "received 0"]),
    (T("vae", "--depth", "-1"), ["depth", "received -1"]),
    (T("vae", "--likelihood", "nosuch"), ["likelihood", "'nosuch'"]),
    (T("gan", "--loss", "nosuch"), ["loss", "'nosuch'"]),
    (T("gan", "--d-steps", "0"), ["d_steps", "received 0"]),
    (T("gan", "--d-lr-scale", "0"), ["d_lr_scale", "received 0"]),
    (T("gan", "--g-lr-scale", "-1"), ["g_lr_scale", "received -1"]),
    (T("gan", "--noise-size", "0"), ["noise_size", "received 0"]),
    (T("diffusion", "--timesteps", "0"), ["timesteps", "received 0"]),
    (T("diffusion", "--timesteps", "100000000"), ["timesteps", "<= 10000", "100000000"]),
    (T("diffusion", "--beta-schedule", "nosuch"), ["beta_schedule", "'nosuch'"]),
    (T("diffusion", "--channel-mults", "0"), ["channel_mults"]),
    (T("diffusion", "--channel-mults", "a,b"), ["--channel-mults", "'a,b'"]),
    (T("diffusion", "--time-dim", "1"), ["time_dim", "received 1"]),
    (T("diffusion", "--base-channels", "0"), ["base_channels", "received 0"]),
    (T("bert-classifier", "--pooling", "nosuch"), ["pooling", "'nosuch'"]),
    (T("bert-classifier", "--base", "{lstm}"), ["base", "'charlm'"]),
    (T("bert-classifier", "--base", "{missing}"), ["missing"]),
    (T("bert-classifier", "--text", "noequals"), ["text", "noequals"]),
    (T("bert-classifier", "--preset", "cpu-tiny"), ["--preset"]),
    # data
    (T("lstm", "--text", "{missing}"), ["text", "missing"]),
    (T("lstm", "--text", "{folder}"), ["text", "folder"]),
    (T("lstm", "--text", "{binary}"), ["UTF-8", "binary.txt"]),
    (T("lstm", "--text", "{empty}"), ["empty"]),
    (T("lstm", "--text", "{short}"), ["block_size"]),
    (T("gpt", "--text", "{empty}"), ["empty"]),
    (T("rbm", "--images", "nosuch"), ["images", "'nosuch'"]),
    (T("rbm", "--images", "fashion-mnist"), ["fashion-mnist"]),
    (T("vae", "--images", "{bomb}"), ["big.png", "30000 x 30000"]),
    (T("gan", "--images", "{bomb}"), ["big.png", "30000 x 30000"]),
    (T("vae", "--images", "{junk}"), ["x.png"]),
    (T("vae", "--images", "{empty_folder}"), ["images", "empty_folder"]),
    (T("vae", "--images", "{file}"), ["images", "file.txt"]),
    (T("vae", "--images", "{missing}"), ["images", "missing"]),
    (T("vae", "--image-size", "4"), ["image_size"]),
    (T("vae", "--images", "{junk}", "--image-size", "0"), ["image_size", "received 0"]),
    (T("vae", "--images", "{junk}", "--image-size", "100000"), ["image_size", "100000"]),
    (T("vae", "--images", "{junk}", "--channels", "2"), ["channels", "2"]),
    # --config
    (T("lstm", "--config", "{missing}"), ["--config", "missing"]),
    (T("lstm", "--config", "{folder}"), ["--config", "folder"]),
    (T("lstm", "--config", "{bad_syntax}"), ["--config", "TOML"]),
    (T("lstm", "--config", "{bad_type}"), ["hidden_size", "'x'"]),
    (T("lstm", "--config", "{unknown}"), ["nosuch"]),
    (T("lstm", "--config", "{nan}"), ["hidden_size", "nan"]),
    (T("lstm", "--config", "{binary}"), ["--config", "UTF-8"]),
    (T("lstm", "--config", ""), ["--config"]),
    # --out
    (T("lstm", "--out", ""), ["--out", "empty"]),
    (T("vae", "--out", ""), ["--out", "empty"]),
    (T("gpt", "--out", "{lstm}"), ["run_dir", "lstm"]),
    # --resume
    (["train", "--resume", "{missing}"], ["missing"]),
    (["train", "--resume", "{file}"], ["file.txt"]),
    (["train", "--resume", "{folder}"], ["folder"]),
    (["train", "--resume"], ["--resume"]),
    (["train", "lstm", "--resume", "{gpt}"], ["'gpt'"]),
    (["train", "lstm", "--resume", "{lstm}", "--hidden-size", "5"], ["hidden_size"]),
    (["train", "lstm", "--resume", "{lstm}", "--preset", "cpu-tiny"], ["--preset"]),
    (["train", "lstm", "--resume", "{lstm}", "--out", "{new}"], ["--out"]),
    (["train", "lstm", "--resume", "{lstm}", "--text", "{short}"], ["block_size"]),
    (["train", "--resume", "{lstm}", "--max-steps", "0"], ["max_steps", "received 0"]),
    (["train", "--resume", "{lstm}", "--lr", "nan"], ["lr", "nan"]),
    (["train", "--resume", "{c:run_truncated}"], ["run.json"]),
    (["train", "--resume", "{c:weights_flipped}"], ["model.safetensors", "sha256"]),
    (["train", "--resume", "{c:no_checkpoint}"], ["checkpoint"]),
    (["train", "--resume", "{c:config_truncated}"], ["checkpoint"]),
    # finetune
    (["finetune"], ["RUN_DIR"]),
    (["finetune", "{missing}", "--quiet"], ["missing"]),
    (["finetune", "{lstm}", "--quiet"], ["'charlm'"]),
    (["finetune", "{file}", "--quiet"], ["file.txt"]),
    (["finetune", "{bert}", "--quiet", "--out", "{ro}/x"], ["--out", "written"]),
    (["finetune", "{bert}", "--quiet", "--out", "{file}"], ["--out", "file.txt"]),
    (["finetune", "{bert}", "--quiet", "--max-steps", "0", "--out", "{new}"], ["max_steps"]),
    (["finetune", "{bert}", "--quiet", "--pooling", "nosuch", "--out", "{new}"], ["pooling", "'nosuch'"]),
    # ------------------------------------------------------------------ sample
    (["sample"], ["RUN_DIR"]),
    (["sample", "{missing}"], ["missing"]),
    (["sample", "{file}"], ["file.txt"]),
    (["sample", "{empty_folder}"], ["empty_folder"]),
    (["sample", "{lstm}/checkpoints"], ["checkpoints"]),
    (["sample", "{lstm}/run.json"], ["run.json"]),
    (S("bert"), ["fill"]),
    (S("lstm", "--length", "-1"), ["length", "-1"]),
    (S("lstm", "--length", "1000000000"), ["length", "100000", "1000000000"]),
    (S("gpt", "--length", "100001"), ["length", "100000", "100001"]),
    (S("lstm", "--length", "abc"), ["--length", "'abc'"]),
    (S("lstm", "--temperature", "-1"), ["temperature", "-1"]),
    (S("lstm", "--temperature", "nan"), ["temperature", "nan"]),
    (S("lstm", "--temperature", "inf"), ["temperature", "inf"]),
    (S("gpt", "--temperature", "inf"), ["temperature", "inf"]),
    (S("gpt", "--temperature", "hot"), ["--temperature", "'hot'"]),
    (S("lstm", "--top-k", "0"), ["top_k", "received 0"]),
    (S("gpt", "--top-k", "-1"), ["top_k", "received -1"]),
    (S("lstm", "--top-p", "0"), ["top_p", "received 0"]),
    (S("gpt", "--top-p", "1.5"), ["top_p", "1.5"]),
    (S("gpt", "--top-p", "nan"), ["top_p", "nan"]),
    (S("lstm", "--prompt", ""), ["prompt", "''"]),
    (S("gpt", "--prompt", "\u2603"), ["prompt", "\u2603"]),
    (S("lstm", "--stop", ""), ["stop", "''"]),
    (S("lstm", "--seed", "abc"), ["--seed", "'abc'"]),
    (S("gpt", "--seed", "99999999999999999999999"), ["seed", "99999999999999999999999"]),
    (S("lstm", "--n", "5"), ["--n 5"]),
    (S("gpt", "--png", "x.png"), ["--png"]),
    (S("lstm", "--cache"), ["--cache"]),
    (S("vae", "--n", "0"), ["n", "received 0"]),
    (S("vae", "--n", "-1"), ["n", "received -1"]),
    (S("vae", "--n", "1000000000"), ["1000000000"]),
    (S("vae", "--png", "{folder}"), ["--png", "folder"]),
    (S("vae", "--png", "{ro}/x.png"), ["--png", "written"]),
    (S("vae", "--png", "{file}/x.png"), ["--png", "file.txt"]),
    (S("vae", "--png", "{missing}/x.png"), ["--png", "missing"]),
    (S("vae", "--png", ""), ["--png", "empty"]),
    (S("vae", "--latent-map", "{folder}"), ["--latent-map", "folder"]),
    (S("vae", "--interpolate", "{ro}/i.png"), ["--interpolate", "written"]),
    (S("vae", "--reconstruct", "{folder}/"), ["--reconstruct"]),
    (S("vae", "--prompt", "x"), ["--prompt"]),
    (S("vae", "--seed", "abc"), ["--seed", "'abc'"]),
    # corrupt runs
    *[(S("c:" + name, "--length", "5"), [name]) for name in (
        "config_truncated", "config_hidden_size", "config_manifest", "config_binary", "run_truncated", "run_list",
        "run_empty", "weights_truncated", "weights_flipped", "weights_missing", "tokenizer_missing",
        "tokenizer_truncated", "no_checkpoint", "config_is_a_folder")],
    (S("c:config_negative", "--length", "5"), ["hidden_size", "-7"]),
    (S("c:config_text", "--length", "5"), ["hidden_size", "'big'"]),
    (S("c:config_unknown_field", "--length", "5"), ["zzz"]),
    (S("c:run_family", "--length", "5"), ["'nosuch'"]),
    (S("c:gpt_config_nan", "--length", "5"), ["dropout", "nan"]),
    (S("c:gpt_config_huge", "--length", "5"), ["memory"]),
    # ------------------------------------------------------------------ eval
    (["eval"], ["RUN_DIR"]),
    (["eval", "{missing}"], ["missing"]),
    (E("lstm"), ["eval", "'charlm'"]),
    (E("gpt"), ["eval", "'gpt'"]),
    (E("vae", "--n", "0"), ["n", "received 0"]),
    (E("vae", "--n", "-1"), ["n", "received -1"]),
    (E("vae", "--n", "1000000000"), ["n", "1000000000"]),
    (E("vae", "--seed", "abc"), ["--seed", "'abc'"]),
    (E("vae", "--split", "val"), ["--split"]),
    (E("bert", "--batches", "0"), ["batches", "received 0"]),
    (E("bert", "--batches", "-1"), ["batches", "received -1"]),
    (E("bert", "--batch-size", "0"), ["batch_size", "received 0"]),
    (E("bert", "--batch-size", "1000000000"), ["batch_size", "<= 4096", "1000000000"]),
    (E("bert", "--batches", "1000000000"), ["batches", "<= 100000"]),
    (E("c:vae_config_huge"), ["memory"]),
    (E("c:run_truncated"), ["run.json"]),
    # ------------------------------------------------------------------ attention, fill, classify
    (["attention", "{gpt}"], ["--text"]),
    (["attention", "{gpt}", "--text", ""], ["text", "''"]),
    (["attention", "{gpt}", "--text", "x" * 500], ["500"]),
    (["attention", "{gpt}", "--text", "\u2603"], ["text", "\u2603"]),
    (["attention", "{lstm}", "--text", "ab"], ["attention", "'charlm'"]),
    (["attention", "{gpt}", "--text", "ab", "--out", "{folder}"], ["--out", "folder"]),
    (["attention", "{gpt}", "--text", "ab", "--out", "{ro}/a.png"], ["--out", "written"]),
    (["attention", "{gpt}", "--text", "ab", "--out", "{file}/a.png"], ["--out", "file.txt"]),
    (["attention", "{gpt}", "--text", "ab", "--out", ""], ["--out", "empty"]),
    (["attention", "{missing}", "--text", "ab"], ["missing"]),
    (["attention", "{bert}", "--text", ""], ["text", "''"]),
    (["attention", "{c:gpt_config_nan}", "--text", "ab"], ["dropout", "nan"]),
    (["fill", "{bert}"], ["TEXT"]),
    (["fill", "{bert}", "no mask here"], ["[MASK]"]),
    (["fill", "{bert}", ""], ["[MASK]"]),
    (["fill", "{gpt}", "a[MASK]b"], ["fill", "'gpt'"]),
    (["fill", "{bert}", "a[MASK]b", "--top-k", "0"], ["top_k", "received 0"]),
    (["fill", "{bert}", "a[MASK]b", "--top-k", "-1"], ["top_k", "received -1"]),
    (["fill", "{bert}", "a[MASK]b", "--top-k", "100000"], ["top_k", "100000"]),
    (["fill", "{bert}", "\u2603[MASK]"], ["\u2603"]),
    (["fill", "{missing}", "a[MASK]"], ["missing"]),
    (["classify", "{lstm}"], ["--text"]),
    (["classify", "{lstm}", "--text", "x"], ["classify", "'charlm'"]),
    (["classify", "{bert}", "--text", "x"], ["classify", "'bert'"]),
    (["classify", "{missing}", "--text", "x"], ["missing"]),
    # ------------------------------------------------------------------ the LLM techniques (more in tests/llm/)
    (["finetune", "{lstm}"], ["RUN_DIR", "'charlm'"]),
    (["finetune", "{gpt}", "--freeze", "3"], ["freeze", "3"]),
    (["finetune", "{gpt}", "--lora-rank", "2", "--freeze", "0"], ["--freeze", "--lora-rank"]),
    (["prompt", "{lstm}", "--task", "sort"], ["prompt", "'charlm'"]),
    (["prompt", "{missing}", "--task", "sort"], ["missing"]),
    (["inject", "{gpt}", "--data", "abc"], ["inject", "'gpt'"]),
    (["inject", "{missing}", "--data", "x"], ["missing"]),
    (["rlhf", "nosuch"], ["nosuch"]),
    (["rlhf", "reward", "{gpt}", "--prefs", "{file}"], ["file.txt"]),
    (["rlhf", "ppo", "{bert}", "--judge", "vowels"], ["base", "'bert'"]),
    (["rlhf", "dpo", "{gpt}"], ["prefs", "nothing"]),
    (["rlhf", "label", "{gpt}", "--prompts", "{binary}", "--out", "{new}"], ["binary.txt", "UTF-8"]),
    (["rlhf", "label", "{gpt}", "--prompts", "{short}", "--judge", "nosuch", "--out", "{new}"], ["judge",
                                                                                                      "nosuch"]),
    # ------------------------------------------------------------------ the applications (more in tests/tasks/)
    (["translate", "{gpt}", "three"], ["translate", "'gpt' run"]),
    (["translate", "{missing}", "three"], ["missing"]),
    (T("translate", "--pairs", "{file}"), ["--pairs", "file.txt", "exactly one tab"]),
    (T("translate", "--arch", "nosuch"), ["arch", "'nosuch'"]),
    (T("translate", "--high", "0"), ["number range", "received 1"]),
    (["caption", "{gpt}", "{file}"], ["caption", "'gpt' run"]),
    (["caption", "{missing}", "{file}"], ["missing"]),
    (T("caption", "--images", "{file}"), ["images", "file.txt", "a file"]),
    (T("caption", "--images", "{folder}"), ["captions.tsv", "received none"]),
    (["transcribe", "{gpt}", "{missing}"], ["does not exist"]),
    (["transcribe", "{gpt}", "{file}"], ["readable WAV", "file.txt"]),
    (["transcribe", "{gpt}", "{binary}"], ["readable WAV", "binary.txt"]),
    (T("asr", "--wavs", "{file}"), ["--wavs", "file.txt"]),
    (T("asr", "--wavs", "{folder}"), ["transcripts.tsv"]),
    (T("asr", "--utterances", "0"), ["utterances", "received 0"]),
    (T("asr", "--corpus-seed", "-1"), ["corpus_seed", "received -1"]),
    (["speak", "{gpt}", "hello", "{new}.wav"], ["speak", "'gpt' run"]),
    (["speak", "{missing}", "hello", "{new}.wav"], ["missing"]),
    (T("tts", "--asr", "{gpt}"), ["asr", "'gpt' run"]),
    (T("tts", "--utterances", "0"), ["utterances", "received 0"]),
    # the prediction and control tasks (more in tests/tasks/)
    (["forecast", "{gpt}", "--horizon", "12"], ["forecast", "'gpt' run"]),
    (["forecast", "{missing}"], ["missing"]),
    (T("forecast", "--series", "nosuch"), ["series", "'nosuch'"]),
    (T("forecast", "--csv", "{file}", "--column", "price"), ["--column", "file.txt", "'price'"]),
    (T("forecast", "--horizon", "0"), ["horizon", "received 0"]),
    (["read", "{gpt}", "{file}"], ["JSON", "file.txt"]),
    (["read", "{missing}", "{file}"], ["JSON", "file.txt"]),
    (["write", "{gpt}", "hello", "--png", "{new}.png"], ["write", "'gpt' run"]),
    (T("handwriting", "--task", "nosuch"), ["task", "'nosuch'"]),
    (T("handwriting", "--strokes", "{binary}"), ["strokes", "binary.txt", "UTF-8"]),
    (["play", "{gpt}"], ["play", "'gpt' run"]),
    (["play", "{missing}"], ["missing"]),
    (T("control", "--env", "nosuch"), ["env", "'nosuch'"]),
    (T("control", "--env-steps", "0"), ["env_steps", "received 0"]),
    (T("control", "--policy", "nosuch"), ["policy", "'nosuch'"]),
    # ------------------------------------------------------------------ unfold
    (["unfold"], ["--length"]),
    (["unfold", "--length", "0"], ["length", "received 0"]),
    (["unfold", "--length", "-1"], ["length", "received -1"]),
    (["unfold", "--length", "abc"], ["--length", "'abc'"]),
    (["unfold", "--length", "100000000"], ["length", "100000000"]),
    (["unfold", "-T", "3", "--layers", "0"], ["layers", "received 0"]),
    (["unfold", "-T", "3", "--layers", "100000"], ["layers", "100000"]),
    (["unfold", "-T", "3", "--wrt", "nosuch"], ["wrt", "'nosuch'"]),
    (["unfold", "-T", "3", "--wrt", "w_x[5]"], ["wrt", "'w_x[5]'"]),
    (["unfold", "-T", "3", "--output", "nosuch"], ["--output", "'nosuch'"]),
    (["unfold", "-T", "3", "--png", "{folder}"], ["--png", "folder"]),
    (["unfold", "-T", "3", "--png", "{ro}/u.png"], ["--png", "written"]),
    (["unfold", "-T", "3", "--png", "{file}/u.png"], ["--png", "file.txt"]),
    (["unfold", "-T", "3", "--png", ""], ["--png", "empty"]),
    # ------------------------------------------------------------------ bptt
    (["bptt", "--trials", "0"], ["--trials", "received 0"]),
    (["bptt", "--trials", "-1"], ["--trials", "received -1"]),
    (["bptt", "--trials", "1000000000"], ["--trials", "1000000000"]),
    (["bptt", "--layers", "0"], ["--layers", "received 0"]),
    (["bptt", "--layers", "1000000"], ["--layers", "1000000"]),
    (["bptt", "--layers", "abc"], ["--layers", "'abc'"]),
    (["bptt", "--hidden-size", "0"], ["--hidden-size", "received 0"]),
    (["bptt", "--hidden-size", "100000000"], ["--hidden-size", "100000000"]),
    (["bptt", "--truncate", "0"], ["truncate", "received 0"]),
    (["bptt", "--truncate", "-1"], ["truncate", "received -1"]),
    (["bptt", "--output", "nosuch"], ["--output", "'nosuch'"]),
    (["bptt", "--loss", "nosuch"], ["--loss", "'nosuch'"]),
    (["bptt", "--seed", "-1"], ["--seed", "received -1"]),
    # ------------------------------------------------------------------ gradflow
    (["gradflow", "--cells", "nosuch"], ["cell", "'nosuch'"]),
    (["gradflow", "--cells", ""], ["cells"]),
    (["gradflow", "--scales", "abc"], ["--scales", "'abc'"]),
    (["gradflow", "--scales", "-1"], ["scale", "-1"]),
    (["gradflow", "--scales", "nan"], ["scale", "nan"]),
    (["gradflow", "--length", "0"], ["length", "received 0"]),
    (["gradflow", "--hidden-size", "0"], ["hidden_size", "received 0"]),
    (["gradflow", "--hidden-size", "10000000"], ["hidden_size", "10000000"]),
    (["gradflow", "--batch-size", "0"], ["batch_size", "received 0"]),
    (["gradflow", "--repeats", "0"], ["repeats", "received 0"]),
    (["gradflow", "--forget-bias", "nan"], ["forget_bias", "nan"]),
    (["gradflow", "--length", "100000000"], ["length", "<= 10000", "100000000"]),
    (["gradflow", "--batch-size", "100000000"], ["batch_size", "<= 4096"]),
    (["gradflow", "--out", ""], ["--out", "an empty path"]),
    # ------------------------------------------------------------------ hopfield
    (["hopfield"], ["action"]),
    (["hopfield", "nosuch"], ["'nosuch'"]),
    (["hopfield", "capacity", "--out", "{new}"], ["--units"]),
    *[(["hopfield", "capacity", "--units", "20", "--loads", "0.1", "--trials", "1", "--out", "{new}", *a], f)
      for a, f in [
        (["--units", "abc"], ["--units", "'abc'"]),
        (["--units", "1"], ["units", "received 1"]),
        (["--units", ""], ["--units", "''"]),
        (["--units", "20,abc"], ["--units", "'20,abc'"]),
        (["--units", "1000000"], ["memory"]),
        (["--loads", "abc"], ["--loads", "'abc'"]),
        (["--loads", "0"], ["loads", "received 0"]),
        (["--loads", "5"], ["loads", "received 5"]),
        (["--loads", "nan"], ["loads", "nan"]),
        (["--trials", "0"], ["--trials", "received 0"]),
        (["--trials", "-1"], ["--trials", "received -1"]),
        (["--trials", "1000000000"], ["--trials", "1000000000"]),
        (["--flip", "2"], ["flip", "received 2"]),
        (["--flip", "nan"], ["flip", "nan"]),
        (["--max-sweeps", "0"], ["max_sweeps", "received 0"]),
        (["--rule", "nosuch"], ["--rule", "'nosuch'"]),
        (["--seed", "abc"], ["--seed", "'abc'"]),
        (["--digit", "3"], ["--digit", "recall"]),
        (["--out", "{file}"], ["--out", "file.txt"]),
        (["--out", "{ro}/h"], ["--out", "written"]),
        (["--out", "{file}/h"], ["--out", "file.txt"]),
        (["--out", ""], ["--out", "empty"]),
    ]],
    *[(["hopfield", "recall", "--out", "{new}", *a], f) for a, f in [
        (["--digits", "abc"], ["--digits", "'abc'"]),
        (["--digits", "12"], ["--digits", "12"]),
        (["--digits", ""], ["--digits", "''"]),
        (["--digits", "3,3"], ["digits", "[3, 3]"]),
        (["--digit", "7"], ["--digit", "received 7"]),
        (["--digit", "-1"], ["--digit", "received -1"]),
        (["--noise", "2"], ["--noise", "received 2"]),
        (["--noise", "nan"], ["--noise", "nan"]),
        (["--occlude", "nosuch"], ["--occlude", "'nosuch'"]),
        (["--mode", "nosuch"], ["--mode", "'nosuch'"]),
        (["--rule", "all"], ["--rule", "'all'"]),
        (["--images", "nosuch"], ["images", "'nosuch'"]),
        (["--images", "fashion-mnist"], ["fashion-mnist"]),
        (["--units", "5"], ["--units", "capacity"]),
        (["--trials", "2"], ["--trials", "capacity"]),
        (["--out", "{file}"], ["--out", "file.txt"]),
        (["--out", "{ro}/h"], ["--out", "written"]),
        (["--out", ""], ["--out", "empty"]),
    ]],
    # ------------------------------------------------------------------ boltzmann
    *[(["boltzmann", "--epochs", "2", "--out", "{new}", *a], f) for a, f in [
        (["--lr", "1e308"], ["lr", "1e+308"]),
        (["--lr", "1e308", "--method", "gibbs"], ["lr", "1e+308"]),
        (["--lr", "0"], ["lr", "received 0"]),
        (["--lr", "-1"], ["lr", "received -1"]),
        (["--lr", "nan"], ["lr", "nan"]),
        (["--lr", "inf"], ["lr", "inf"]),
        (["--init-std", "1e308"], ["init_std", "1e+308"]),
        (["--init-std", "-1"], ["init_std", "received -1"]),
        (["--init-std", "nan"], ["init_std", "nan"]),
        (["--hidden", "abc"], ["--hidden", "'abc'"]),
        (["--hidden", "-1"], ["hidden", "received -1"]),
        (["--hidden", "100"], ["units"]),
        (["--hidden", ""], ["--hidden", "''"]),
        (["--bits", "1"], ["n_bits", "received 1"]),
        (["--bits", "30"], ["n_bits", "received 30"]),
        (["--method", "nosuch"], ["method", "'nosuch'"]),
        (["--epochs", "0"], ["--epochs", "received 0"]),
        (["--epochs", "-1"], ["--epochs", "received -1"]),
        (["--epochs", "1000000000000"], ["--epochs", "1000000000000"]),
        (["--momentum", "1"], ["momentum", "received 1"]),
        (["--momentum", "-0.5"], ["momentum", "received -0.5"]),
        (["--seed", "abc"], ["--seed", "'abc'"]),
        (["--out", "{file}"], ["--out", "file.txt"]),
        (["--out", "{ro}/b"], ["--out", "written"]),
        (["--out", "{file}/b"], ["--out", "file.txt"]),
        (["--out", ""], ["--out", "empty"]),
    ]],
    # ------------------------------------------------------------------ tour (refused before any training)
    (["tour", "--out", "{file}"], ["--out", "file.txt"]),
    (["tour", "--out", "{ro}/tour"], ["--out", "written"]),
    (["tour", "--out", "{file}/tour"], ["--out", "file.txt"]),
    (["tour", "--out", ""], ["--out", "empty"]),
    (["tour", "--quick", "--only", "zzzz", "--out", "{new}"], ["--only", "'zzzz'"]),
    (["tour", "--bogus"], ["--bogus"]),
    # ------------------------------------------------------------------ explore (refused before it listens)
    (["explore", "{missing}"], ["RUNS_DIR", "missing"]),
    (["explore", "{file}"], ["RUNS_DIR", "file.txt"]),
    (["explore", "{folder}", "--port", "0"], ["--port", "0"]),
    (["explore", "{folder}", "--port", "65536"], ["--port", "65536"]),
    (["explore", "{folder}", "--port", "http"], ["--port", "'http'"]),
    (["explore", "{folder}", "--host", "no.such.host.invalid"], ["--host", "no.such.host.invalid"]),
    (["explore", "{folder}", "--host", "203.0.113.7"], ["--host", "203.0.113.7"]),
]


def _fill(argv: list[str], area: Path, ro: str, new: Path) -> list[str]:
    """The case's argv with the fixture's paths: {lstm} (a good run), {c:NAME} (a corrupt copy),
    {file}, {folder}, ... (inputs), {ro} (a read-only folder), {new} (a path that does not
    exist yet), {missing} (one that never will)."""
    names = {run: str(area / run) for run in GOOD_RUNS}
    names.update({p.stem: str(p) for p in (area / "inputs").iterdir()})
    names.update(ro=ro, new=str(new), missing=str(area / "missing"))
    out = []
    for a in argv:
        for key, value in names.items():
            a = a.replace("{" + key + "}", value)
        if "{c:" in a:
            start = a.index("{c:")
            end = a.index("}", start)
            a = a[:start] + str(area / "corrupt" / a[start + 3:end]) + a[end + 1:]
        out.append(a)
    return out


def _case_id(case: tuple[list[str], list[str]]) -> str:
    return " ".join(case[0])[:80] or "(nothing)"


def test_the_table_is_large_and_covers_every_command():
    from seqlab.cli import verb_modules

    assert len(CASES) >= 200
    verbs = {module.VERB for module in verb_modules()}
    covered = {argv[0] for argv, _ in CASES if argv}
    # ``plot`` is being added by another change, with its own bad-input tests (tests/cli/test_plot.py)
    assert verbs - {"plot"} <= covered, verbs - covered
    assert set(COMMANDS) <= {argv[1] for argv, _ in CASES if argv[:1] == ["train"] and len(argv) > 1}


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input(case, area, before, capsys, monkeypatch, tmp_path):
    argv, fragments = case
    ro = _readonly_folder(area)
    argv = _fill(argv, area, ro, tmp_path / "new")
    monkeypatch.chdir(area / "cwd")
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("seqlab") and ": error: " in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    for name, files in before.items():
        assert snapshot(area / name) == files, f"{name} changed"
    assert not list((area / "cwd").iterdir()), "something was written in the working folder"
    assert not (tmp_path / "new").exists() or argv[:1] == ["train"], "output of a refused command"


# --------------------------------------------------------------------------- beyond the table


def _one_line(capsys, argv) -> str:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("seqlab: error: ") and "Traceback" not in err, err
    return err


def _not_writable(monkeypatch, folder: Path) -> None:
    """``os.access`` says ``folder`` (and what is in it) is not writable, as it does for a normal
    user on a read-only folder (root passes every permission check, see the module docstring)."""
    real = os.access
    inside = str(folder.resolve())

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and str(Path(path).resolve()).startswith(inside):
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_resume_of_a_read_only_run_is_refused_before_anything(area, capsys, monkeypatch, tmp_path):
    run = Path(shutil.copytree(area / "lstm", tmp_path / "run"))
    files = snapshot(run)
    _not_writable(monkeypatch, run)
    for argv in (["train", "--resume", str(run), "--max-steps", "4", "--quiet"],
                 ["train", "lstm", "--resume", str(run), "--max-steps", "4", "--quiet"]):
        err = _one_line(capsys, argv)
        assert err == ("seqlab: error: --resume: expected a location where files can be written, received "
                       f"{str(run)!r} (read-only)")
    assert snapshot(run) == files


def test_outputs_in_a_read_only_folder_are_refused_before_anything(area, capsys, monkeypatch, tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    _not_writable(monkeypatch, folder)
    cases = [
        (["train", "lstm", "--out", str(folder / "run"), "--quiet"], "--out"),
        (["sample", str(area / "vae"), "--png", str(folder / "x.png")], "--png"),
        (["attention", str(area / "gpt"), "--text", "ab", "--out", str(folder / "a.png")], "--out"),
        (["unfold", "-T", "3", "--png", str(folder / "u.png")], "--png"),
        (["hopfield", "recall", "--out", str(folder / "h")], "--out"),
        (["boltzmann", "--out", str(folder / "b")], "--out"),
        (["tour", "--out", str(folder / "t")], "--out"),
    ]
    for argv, flag in cases:
        err = _one_line(capsys, argv)
        assert f"{flag}: expected a location where files can be written" in err and "read-only" in err, err
    assert not list(folder.iterdir())


@pytest.mark.parametrize("error, expected", [
    (OSError(28, "No space left on device", "/data/u.png"),
     "'/data/u.png': expected free space on the disk, received no space left on device"),
    (PermissionError(13, "Permission denied", "/data/u.png"),
     "'/data/u.png': expected a location where files can be written (and read), received permission denied"),
    (IsADirectoryError(21, "Is a directory", "/data"),
     "'/data': expected a file, not a folder, received is a directory"),
    (NotADirectoryError(20, "Not a directory", "/f/u.png"),
     "'/f/u.png': expected a path through folders, received not a directory"),
    (FileExistsError(17, "File exists", "/f"),
     "'/f': expected a path that is free (or a folder), received file exists"),
    (OSError("a message of its own\nover two lines"), "a message of its own over two lines"),
    (MemoryError(), "memory: expected sizes whose tensors fit in this machine's memory"),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 800000000000 bytes."), "received a request for 800000000000 bytes"),
])
def test_an_os_or_memory_error_that_gets_through_is_one_line(error, expected, capsys, monkeypatch, tmp_path):
    """What the early checks cannot see (a full disk, a folder made read-only meanwhile, too
    little memory) still ends in one line naming the path and what it should have been."""
    import seqlab.recurrent.unfold

    def unfold(*args, **kwargs):
        raise error

    monkeypatch.setattr(seqlab.recurrent.unfold, "unfold", unfold)
    err = _one_line(capsys, ["unfold", "-T", "3", "--png", str(tmp_path / "u.png")])
    assert err == f"seqlab: error: {expected}" if isinstance(error, OSError) else expected in err, err


def test_an_unexpected_runtime_error_is_not_hidden(monkeypatch):
    import seqlab.recurrent.unfold

    def unfold(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(seqlab.recurrent.unfold, "unfold", unfold)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["unfold", "-T", "3"])


def test_a_boltzmann_fit_that_overflows_is_one_line_and_writes_nothing(capsys, monkeypatch, tmp_path):
    import seqlab.energy.parity_demo

    def demo(*args, **kwargs):
        raise FloatingPointError("fit: weights overflowed at epoch 3 (lr 900); weights left as after epoch 2")

    monkeypatch.setattr(seqlab.energy.parity_demo, "demo", demo)
    err = _one_line(capsys, ["boltzmann", "--lr", "900", "--out", str(tmp_path / "b")])
    assert "--lr 900" in err and "overflowed at epoch 3" in err
    assert not (tmp_path / "b").exists()


def test_gradflow_into_a_file_is_refused_before_the_measurement_and_keeps_the_file(area, capsys, tmp_path):
    """The output folder is checked first: one line, no progress of a measurement whose
    results could not be written."""
    target = tmp_path / "file.txt"
    target.write_text("keep")
    try:
        code = main(["gradflow", "--cells", "rnn", "--scales", "1", "--length", "4", "--repeats", "1",
                     "--no-clipping", "--out", str(target)])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "\n" not in err, err
    assert err.startswith("seqlab: error: --out: expected a folder to write in") and str(target) in err
    assert target.read_text() == "keep"


@pytest.mark.parametrize("run, extra", [("lstm", ["--prompt", "de"]), ("lstm", ["--stop", "e", "--seed", "3"]),
                                        ("gpt", []), ("gpt", ["--no-cache", "--top-k", "5", "--stop", "\n"])])
def test_sample_prints_what_the_library_returns(area, capsys, run, extra):
    """The text is printed as it is generated; what ends up on stdout is what it always was."""
    import seqlab

    assert main(["sample", str(area / run), "--length", "80", *extra]) == 0
    out = capsys.readouterr().out
    options = {"prompt": None, "stop": ()}
    i = 0
    while i < len(extra):
        key = extra[i].lstrip("-").replace("-", "_")
        if key == "no_cache":
            options["cache"], i = False, i + 1
            continue
        value = extra[i + 1]
        options[key] = (options["stop"] + (value,)) if key == "stop" else (int(value) if value.isdigit() else value)
        i += 2
    text = seqlab.sample(str(area / run), length=80, **options)
    assert out == (options["prompt"] or "") + text + "\n"


def test_text_families_stream_through_on_text(area):
    from seqlab import runs

    for name in ("lstm", "gpt"):
        model, record = runs.load(area / name)
        family = runs.get_family(record.family)
        options = family.sample_class(length=40, temperature=1.0)
        pieces = []
        text = family.sample(model, record, options, on_text=pieces.append)
        assert "".join(pieces) == text and len(pieces) > 1
