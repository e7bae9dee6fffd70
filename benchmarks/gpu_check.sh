#!/usr/bin/env bash
# The GPU checks of the recurrent, transformer and energy sections, as one script for a lent CUDA machine:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Tiny Shakespeare is read from $SEQLAB_SHAKESPEARE, else .gpu_data/tinyshakespeare.txt (a copy
# carried to the machine: the device tool does not send ../shared), else the GPT step fails.
# 1. the recurrent layers' Triton kernels (seqlab/recurrent/triton_loops.py), compiled, against the
#    CPU loops in float64 and float32 (values and gradients, ragged batches, gradcheck), and the
#    recurrent training step against cuDNN (issue 17's target: <= 2x) with them;
# 2. the CUDA tests (parity with cuDNN and PyTorch's attention in float64/float32, bf16
#    autocast, GPT and BERT runs on the GPU loading on a CPU, the RBM and the GAN, VAE and
#    diffusion runs on the GPU) and the trainer's CUDA tests (tests/training: test_loop.py's
#    bf16 run resumed on the CPU, test_checkpoint.py's GPU checkpoint loaded on the CPU);
# 3. `seqlab train rbm --device cuda` and `seqlab train lstm --device cuda --precision bf16`,
#    each then sampled on the CPU (`seqlab train` prints a 200-token sample of a text run itself);
# 4. a GPT training step against a nanoGPT-style reference at the baby-GPT recipe (bf16);
# 5. `seqlab train gpt --preset gpu-baby` on tiny Shakespeare for 2 minutes, sampled on the CPU;
# 6. last (it may be cut short by the machine's time): the recurrent kernels' candidate tile and
#    launch settings timed against cuDNN (benchmarks/bench_triton_tiles.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/seqlab_gpu}}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if [ -z "${SEQLAB_SHAKESPEARE:-}" ] && [ -f .gpu_data/tinyshakespeare.txt ]; then
    export SEQLAB_SHAKESPEARE=$PWD/.gpu_data/tinyshakespeare.txt
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -c "import triton; print('triton', triton.__version__)" || echo "no triton here: the fused recurrent layers run Python loops"
echo "== the recurrent Triton kernels against the CPU loops"
python3 -m pytest -q -p no:cacheprovider -p no:randomly tests/recurrent/test_triton_loops.py 2>&1 | tail -6
echo "== recurrent training step against cuDNN (the fused path: the Triton kernels)"
python3 benchmarks/bench_recurrent_speed.py --device cuda --no-readable --no-memory --rounds 4 --reps 3 \
    --out "$OUT/recurrent_speed_cuda" 2>&1 | tail -8
echo "== CUDA tests"
python3 -m pytest -q -p no:cacheprovider -p no:randomly tests/recurrent/test_cuda.py tests/llm/test_llm_cuda.py \
    tests/energy/test_energy_cuda.py tests/generative/test_generative_cuda.py tests/training 2>&1 | tail -6
echo "== RBM (PCD-1) trained on the GPU through the trainer, evaluated and sampled on the CPU"
python3 -m seqlab train rbm --device cuda --out "$OUT/rbm_run" --quiet
CUDA_VISIBLE_DEVICES= python3 -m seqlab sample "$OUT/rbm_run" --n 16 --steps 200 --png "$OUT/rbm_samples.png"
echo "== bf16 training run on the GPU, sampled on the CPU"
python3 -m seqlab train lstm --device cuda --precision bf16 --max-steps 300 --eval-every 100 \
    --out "$OUT/gpu_run" --quiet
CUDA_VISIBLE_DEVICES= python3 -m seqlab sample "$OUT/gpu_run" --prompt "def " --length 120 --seed 0
echo "== GPT training step on the GPU against a nanoGPT-style reference (baby GPT, bf16; issue 17's target <= 1.0)"
python3 benchmarks/bench_gpt_speed.py --recipe baby --device cuda --rounds 10 --steps 10 --threads 1 \
    --out "$OUT/gpt_speed_cuda_baby" 2>&1 | tail -6
echo "== GPT (gpu-baby preset, bf16) on tiny Shakespeare for 2 minutes, sampled on the CPU"
python3 -m seqlab train gpt --preset gpu-baby --text shakespeare --device cuda --precision bf16 \
    --batch-size 64 --max-steps 2000 --max-seconds 120 --eval-every 250 --out "$OUT/gpt_run" --quiet
CUDA_VISIBLE_DEVICES= python3 -m seqlab sample "$OUT/gpt_run" --prompt "ROMEO:" --length 200 --seed 0
echo "== the recurrent Triton kernels' settings, timed (the first is the one in use)"
python3 benchmarks/bench_triton_tiles.py --reps 5 --out "$OUT/triton_tiles" 2>&1 | tail -32
