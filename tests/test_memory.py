"""seqlab.memory: sizes that cannot fit in memory are refused before anything is allocated,
with the estimate; normal sizes pass; the estimate is exact and cheap."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import seqlab
import seqlab.memory as memory
from seqlab.energy.capacity import capacity_bytes, measure_capacity
from seqlab.energy.hopfield import HopfieldNetwork
from seqlab.energy.rbm import RBM, RBMConfig
from seqlab.generative.diffusion import Diffusion, DiffusionConfig
from seqlab.generative.gan import GAN, GANConfig
from seqlab.generative.vae import VAE, VAEConfig
from seqlab.llm.bert import BERT, BERTClassifier, BERTClassifierConfig, BERTConfig
from seqlab.llm.gpt import GPT, GPTConfig
from seqlab.recurrent.charlm import CharLM, CharLMConfig
from seqlab.recurrent.network import SequenceNetwork, SequenceNetworkConfig
from seqlab.testing import one_line_error, snapshot

GB4 = 4_000_000_000


@pytest.fixture
def four_gb(monkeypatch):
    """A machine with 4.0 GB available, on every device: the messages are the same everywhere."""
    monkeypatch.setattr(memory, "available_bytes", lambda device=None: GB4)


# --------------------------------------------------------------------------- the pieces


def test_format_bytes():
    assert [memory.format_bytes(n) for n in (0, 999, 1000, 1_600_000_000_000_000, 4e9, 2.5e21)] == \
        ["0 B", "999 B", "1.0 kB", "1.6 PB", "4.0 GB", "2500.0 EB"]


def test_available_memory_from_meminfo_and_the_cgroup(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    3906250 kB\n")
    assert memory._meminfo_available(str(meminfo)) == 4_000_000_000
    assert memory._meminfo_available(str(tmp_path / "none")) is None
    (tmp_path / "memory.max").write_text("3000000000\n")
    (tmp_path / "memory.current").write_text("1000000000\n")
    assert memory._cgroup_available(str(tmp_path)) == 2_000_000_000
    (tmp_path / "memory.max").write_text("max\n")
    assert memory._cgroup_available(str(tmp_path)) is None
    # the smaller of the two wins (a container's limit below the machine's free memory)
    monkeypatch.setattr(memory, "_meminfo_available", lambda: 8_000_000_000)
    monkeypatch.setattr(memory, "_cgroup_available", lambda: 2_000_000_000)
    assert memory.available_bytes() == 2_000_000_000
    monkeypatch.setattr(memory, "_meminfo_available", lambda: None)
    monkeypatch.setattr(memory, "_cgroup_available", lambda: None)
    monkeypatch.setattr(memory, "_sysconf_available", lambda: 123)
    assert memory.available_bytes("cpu") == 123


@pytest.mark.skipif(sys.platform != "linux", reason="Linux's /proc/meminfo")
def test_available_memory_here_is_a_positive_number():
    n = memory.available_bytes()
    assert isinstance(n, int) and n > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="a machine without CUDA")
def test_no_cuda_device_means_unknown_not_an_error():
    assert memory.available_bytes("cuda") is None


REAL = [
    lambda: CharLM(CharLMConfig(cell="lstm", vocab_size=20, hidden_size=8, num_layers=2)),
    lambda: CharLM(CharLMConfig(cell="gru", vocab_size=20, hidden_size=8, reset="after")),
    lambda: SequenceNetwork(SequenceNetworkConfig(cell="rnn", input_size=3, hidden_size=5, output_size=2)),
    lambda: GPT(GPTConfig(vocab_size=30, block_size=16, d_model=16, num_heads=2, num_layers=2)),
    lambda: GPT(GPTConfig(vocab_size=30, block_size=16, d_model=16, num_heads=2, num_layers=1, position="sinusoidal",
                          tie_weights=False, bias=True)),
    lambda: BERT(BERTConfig(vocab_size=30, mask_id=1, block_size=16, d_model=16, num_heads=2, num_layers=1)),
    lambda: BERTClassifier.from_config(BERTClassifierConfig(
        bert=BERTConfig(vocab_size=30, mask_id=1, cls_id=2, block_size=16, d_model=16, num_heads=2, num_layers=1),
        num_classes=3)),
    lambda: RBM(RBMConfig(visible_size=12, hidden_size=5, n_chains=3)),
    lambda: GAN(GANConfig(noise_size=4, hidden_size=3)),
    lambda: VAE(VAEConfig(hidden_size=7, latent_size=2, depth=2)),
    lambda: Diffusion(DiffusionConfig(timesteps=17, base_channels=4, channel_mults=(1, 2), time_dim=6)),
    lambda: Diffusion(DiffusionConfig(timesteps=9, beta_schedule="cosine", base_channels=2, channel_mults=(1, 2, 2),
                                      image_size=12)),
    lambda: HopfieldNetwork(n_units=9),
]


@pytest.mark.parametrize("make", REAL)
def test_meta_size_is_the_real_size(make):
    """The size found on the meta device is what the model really holds, byte for byte
    (parameters and buffers, each tensor once: tied weights count once)."""
    model = make()
    size = memory.model_size(make)
    assert size.parameters == sum(p.numel() * p.element_size() for p in model.parameters())
    assert size.buffers == sum(b.numel() * b.element_size() for b in model.buffers())
    assert size.needed(training=True) == 4 * size.parameters + size.buffers


def test_the_estimate_never_touches_real_memory():
    """A model of a petabyte is sized in a moment (nothing allocated), and a fresh process that
    sizes every model does not import torch._dynamo (whose import costs about a second: the
    Python fallbacks of some meta kernels need it, and model_size answers them itself)."""
    size = memory.model_size(lambda: CharLM(CharLMConfig(vocab_size=65, hidden_size=10_000_000)))
    assert size.parameters == 4 * (4 * 10**7 * (65 + 10**7 + 1) + 65 * (10**7 + 1))
    # this file by its folder, not as tests.test_memory: hershey-fonts installs a package named "tests"
    code = (f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport test_memory as t\n"
            "import seqlab.memory as m\n"
            "for make in t.REAL: m.model_size(make)\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_the_culprit_is_the_field_that_makes_the_model_large():
    gpt = GPTConfig(vocab_size=65, block_size=10**9, d_model=64, num_heads=4, num_layers=2)
    assert memory.culprit(gpt, lambda c: memory.model_size(lambda: GPT(c)).needed(False)) == "block_size=1000000000"
    nested = BERTClassifierConfig(bert=BERTConfig(vocab_size=30, mask_id=1, cls_id=2, block_size=10**9, d_model=16,
                                                  num_heads=2, num_layers=1), num_classes=2)
    assert memory.culprit(nested, lambda c: memory.model_size(lambda: BERTClassifier.from_config(c)).needed(False)) \
        == "bert.block_size=1000000000"
    assert memory.culprit(object(), lambda c: 0) == "model config"


def test_a_normal_model_passes_and_a_huge_one_is_refused_with_the_estimate(four_gb):
    size = memory.check_model_fits(GPT, GPTConfig(), training=True)
    assert 0 < size.needed(True) < GB4
    with pytest.raises(ValueError, match=r"^hidden_size=10000000: expected a model that fits in memory \(about 4\.0 GB "
                                         r"available\), received one needing about 1\.6 PB for its parameters$"):
        memory.check_model_fits(CharLM, CharLMConfig(vocab_size=65, hidden_size=10_000_000))


def test_a_device_is_checked_too(monkeypatch):
    """Training on a GPU: the CPU holds the model while it is built, the GPU the model, its
    gradients and AdamW's state; the message says which device is short."""
    monkeypatch.setattr(memory, "available_bytes",
                        lambda device=None: GB4 if torch.device(device or "cpu").type == "cpu" else 10**6)
    with pytest.raises(ValueError, match=r"^model config: expected a model that fits in memory \(about 1\.0 MB "
                                         r"available on cuda:0\), received one needing about .* for its parameters, "
                                         r"gradients and optimizer state$"):
        memory.check_model_fits(GPT, GPTConfig(), training=True, device="cuda:0")


# --------------------------------------------------------------------------- the commands


def test_train_refuses_a_hidden_size_that_cannot_fit(four_gb, tmp_path, capsys):
    err = one_line_error(capsys, ["train", "lstm", "--hidden-size", "10000000", "--out", str(tmp_path / "run")])
    assert err == ("seqlab: error: hidden_size=10000000: expected a model that fits in memory (about 4.0 GB "
                   "available), received one needing about 6.4 PB for its parameters, gradients and optimizer state")
    assert not (tmp_path / "run").exists()


def test_hopfield_capacity_refuses_a_million_units(four_gb, tmp_path, capsys):
    err = one_line_error(capsys, ["hopfield", "capacity", "--units", "1000000", "--out", str(tmp_path / "cap")])
    assert err == ("seqlab: error: units=1000000: expected a network that fits in memory (about 4.0 GB available), "
                   "received one needing about 57.6 TB for its 1000000 x 1000000 weights and its patterns "
                   "(load up to 0.8)")
    assert not (tmp_path / "cap").exists()
    assert capacity_bytes(1_000_000, 800_000) == 8 * (4 * 10**12 + 4 * 8 * 10**11)
    measure_capacity([20, 40], [0.1], trials=1)  # a normal size runs


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("memory") / "gpt"
    seqlab.train("gpt", preset="cpu-tiny", block_size=16, max_steps=2, eval_every=2, eval_batches=1, batch_size=2,
                 out=run, progress=False)
    return run


def _edit_block_size(run, value, *, run_json=False):
    (ckpt,) = (run / "checkpoints").glob("step-*/config.json")
    manifest = json.loads(ckpt.read_text())
    manifest["config"]["block_size"] = value
    ckpt.write_text(json.dumps(manifest))
    if run_json:
        saved = json.loads((run / "run.json").read_text())
        saved["model_config"]["block_size"] = value
        (run / "run.json").write_text(json.dumps(saved))


@pytest.mark.parametrize("argv, purpose", [
    (["sample", "{run}"], "its parameters"),
    (["eval", "{run}"], "its parameters"),
    (["train", "--resume", "{run}", "--max-steps", "4"],
     "its parameters, gradients and optimizer state, and a training step's activations"),
])
@pytest.mark.parametrize("run_json", [False, True])
def test_a_run_edited_to_a_huge_context_is_refused_before_loading(gpt_run, tmp_path, capsys, four_gb, argv, purpose,
                                                                  run_json):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(gpt_run, run)
    assert isinstance(seqlab.sample(run, length=3), str)  # as saved, the run samples
    _edit_block_size(run, 1_000_000_000, run_json=run_json)
    before = snapshot(run)
    # the resumed run's batches (2 windows of 10^9 tokens) need more than its parameters
    needed = "256.0 GB" if purpose == "its parameters" else "24.0 TB"
    err = one_line_error(capsys, [a.format(run=run) for a in argv])
    assert err == (f"seqlab: error: block_size=1000000000: expected a model that fits in memory (about 4.0 GB "
                   f"available), received one needing about {needed} for {purpose}")
    assert snapshot(run) == before


def test_sampling_a_number_of_images_that_cannot_fit_is_refused(four_gb):
    for model in (GAN(), VAE(), Diffusion(timesteps=5), RBM()):
        with pytest.raises(ValueError, match=r"^n=1000000000000: expected a batch that fits in memory \(about 4\.0 GB "
                                             r"available\), received one needing about .* [TP]B for the results and "
                                             r"the network's activations$"):
            model.sample(10**12)
    assert GAN().sample(2).shape == (2, 1, 8, 8)  # a normal number passes


def test_train_refuses_a_batch_whose_activations_cannot_fit(four_gb, tmp_path, capsys):
    """The model alone fits; a step on 10^8 windows of its context does not: the batch is named."""
    err = one_line_error(capsys, ["train", "gpt", "--preset", "cpu-tiny", "--batch-size", "100000000",
                                  "--out", str(tmp_path / "run")])
    assert err.startswith("seqlab: error: batch_size=100000000: expected a model that fits in memory (about 4.0 GB "
                          "available), received one needing about ")
    assert err.endswith(" TB for its parameters, gradients and optimizer state, and a training step's activations")
    assert not (tmp_path / "run").exists()
    small = GPTConfig(vocab_size=65, block_size=64, d_model=64, num_heads=4, num_layers=2)
    assert GPT.activation_bytes(small, 32) < 10**8 < GPT.activation_bytes(small, 10**4)


def test_a_hopfield_network_too_large_for_memory_is_refused(four_gb):
    with pytest.raises(ValueError, match=r"^n_units=1000000: expected a network that fits in memory \(about 4\.0 GB "
                                         r"available\), received one needing about 16\.0 TB for its 1000000 x 1000000 "
                                         r"weights$"):
        HopfieldNetwork(n_units=1_000_000)
    assert HopfieldNetwork(n_units=100).w.shape == (100, 100)
