#!/usr/bin/env bash
# Everything this project checks on a lent GPU, in one command (the device tool's `run`):
# the gpu-marked tests, then the LLaVA LoRA training throughput bench on the 7B and 13B shapes.
#
#   bash bench/gpu_check.sh            # figures and logs go to $OUT (the device tool's) or ./gpu-out
#
# Wheels under .whl/ (pure-Python or cp312 manylinux) are installed first into /tmp/site and put
# ahead of the host's packages, so the run uses the versions CI pins (transformers, peft, ...)
# rather than whatever the GPU image ships. Each step has its own time limit and a step that fails
# does not stop the next one; the exit status is the first failure's.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi

step() {  # step LIMIT_S LOG COMMAND...: run it, keep its output, remember the first failure
    local limit=$1 log=$2
    shift 2
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$log"
    local rc=${PIPESTATUS[0]}
    if [ "$status" -eq 0 ]; then status=$rc; fi
}

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import torch, transformers, peft, importlib.util as u
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__,
      "peft", peft.__version__, "flash_attn", "present" if u.find_spec("flash_attn") else "absent")'
} 2>&1 | tee "$OUT/gpu.txt"

# Only the files that hold gpu tests: collecting the whole suite would import the services' clients
# (prefect, alembic, pdfplumber, ...), which a GPU image need not have.
mapfile -t gpu_tests < <(grep -rl "pytest.mark.gpu" tests --include="test_*.py")
if [ "${#gpu_tests[@]}" -eq 0 ]; then  # no paths would make pytest collect the whole suite
    echo "no test file holds a gpu-marked test" | tee "$OUT/pytest_gpu.txt"
    status=1
else
    step 150 pytest_gpu.txt python3 -m pytest -q -p no:cacheprovider -m gpu "${gpu_tests[@]}"
fi
step 300 train_gpu.txt python3 bench/train_gpu.py --all --json "$OUT/train_gpu.json"
# The 7B shape again with 4 samples a step: how much of the card one sample leaves idle.
step 120 train_gpu_7b_b4.txt python3 bench/train_gpu.py --shape 7b --batch-size 4 --steps 6 \
    --warmup 2 --json "$OUT/train_gpu_7b_b4.json"
exit "$status"
