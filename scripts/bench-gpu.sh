#!/usr/bin/env bash
# Every oxgen benchmark on a GPU machine, written to one results folder.
#
#   scripts/bench-gpu.sh                 build with cargo and run here (a machine with a GPU)
#   scripts/bench-gpu.sh prepare         build here, pack for a machine without a toolchain:
#                                        .carry/oxgen.gz (stripped release binary), the PyTorch
#                                        peer script, and the Vulkan loader .debs in .gl/
#   scripts/bench-gpu.sh run [OUT]       on that machine, from the repository root: unpack, run,
#                                        write OUT (default $OUT, else bench-results/)
#
# What runs (later kernels add a line to `benchmarks` below):
#   oxgen info                             the adapter and its limits
#   oxgen bench denoise                    fused denoising update vs burn (fusion on and off),
#                                          copy roofline, GroupNorm+SiLU, whole-sampler wall times
#   oxgen bench attention                  flash attention vs burn's attention and fallback, L 256 to
#                                          8,192: d = 64 (plain and causal), d = 128, f16; then ours
#                                          alone at L = 16,384 and 32,768 with peak memory
#   oxgen bench decode                     GPT decoding with the KV cache vs re-running the window
#   oxgen bench conv                       the UNet's convolutions vs burn's Conv2d (fwd, fwd+bwd)
#   oxgen bench attention --decode         one token against a KV cache (subgroup merge on and off)
#   oxgen bench train --against-reference  the default UNet and GPT steps, kernels vs references
#     --against-no-subgroups               and with subgroup operations off
#   oxgen bench train --devices all        with several GPUs: one device vs all of them (scaling)
#   ../shared/peers/torch_anchors.py       PyTorch's eager DDPM step and copy rate, same machine,
#                                          same run (skipped where python3 has no CUDA torch)
# Results: OUT/results.json ({"meta": …, "denoise": …, "torch": …}) and one .txt per benchmark.
# OXGEN_BENCH_ARGS adds flags to `oxgen bench denoise` (e.g. "--sizes 10000 --no-sampler").
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-local}

benchmarks() { # $1: the oxgen binary, $2: the output folder
    local bin=$1 out=$2
    "$bin" info 2>&1 | tee "$out/info.txt"
    # shellcheck disable=SC2086 # OXGEN_BENCH_ARGS is a list of flags, e.g. "--iters 5 --no-sampler"
    timeout 480 "$bin" bench denoise --json "$out/denoise.json" ${OXGEN_BENCH_ARGS:-} 2>&1 |
        tee "$out/denoise.txt"
    local seq=256,1024,2048,4096,8192
    timeout 300 "$bin" bench attention --seq $seq --json "$out/attention.json" 2>&1 |
        tee "$out/attention.txt"
    timeout 300 "$bin" bench attention --seq $seq --causal --json "$out/attention-causal.json" 2>&1 |
        tee "$out/attention-causal.txt"
    timeout 240 "$bin" bench attention --seq $seq --dim 128 --json "$out/attention-d128.json" 2>&1 |
        tee "$out/attention-d128.txt"
    timeout 240 "$bin" bench attention --seq 1024,2048,4096 --f16 --json "$out/attention-f16.json" \
        2>&1 | tee "$out/attention-f16.txt"
    # One token against a KV cache: the decode path, with its subgroup merge and without.
    timeout 240 "$bin" bench attention --decode --seq 1024,4096,16384,65536 --batch 1 --heads 8 \
        --json "$out/attention-decode.json" 2>&1 | tee "$out/attention-decode.txt"
    timeout 240 "$bin" bench decode --device wgpu --json "$out/decode.json" 2>&1 |
        tee "$out/decode.txt"
    timeout 240 "$bin" bench conv --json "$out/conv.json" 2>&1 | tee "$out/conv.txt"
    for m in unet-digits gpt-arithmetic; do
        timeout 300 "$bin" bench train --model "$m" --device wgpu --against-reference \
            --against-no-subgroups --no-peer \
            --json "$out/steps-$m.json" 2>&1 | tee "$out/steps-$m.txt"
    done
    # Memory grows with L: B = 1, H = 8, ours only (burn's L×L buffers would be 8 and 32 GiB).
    timeout 300 "$bin" bench attention --seq 16384,32768 --batch 1 --heads 8 --iters 2 --no-peers \
        --json "$out/attention-long.json" 2>&1 | tee "$out/attention-long.txt"
    # Data parallelism (issue 22), where the machine has several GPU adapters: the GPT and UNet
    # steps on the first adapter alone and split over all of them, in one run each (ms/step,
    # all-reduce ms/step, scaling efficiency).
    if [ "$("$bin" info 2>/dev/null | grep -c 'discrete GPU')" -gt 1 ]; then
        for m in gpt-char unet-digits; do
            timeout 300 "$bin" bench train --model "$m" --devices all --no-peer \
                --json "$out/parallel-$m.json" 2>&1 | tee "$out/parallel-$m.txt"
        done
    fi
}

peer() { # $1: torch_anchors.py, $2: the output folder
    if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        (export OUT=$2 PYTHONUNBUFFERED=1; timeout 300 python3 "$1" 2>&1 | tee "$2/torch.txt")
    else
        echo "no CUDA PyTorch here: the peer columns stay empty" | tee "$2/torch.txt"
    fi
}

combine() { # $1: the output folder
    python3 - "$1" <<'EOF'
import json, os, subprocess, sys, datetime
out = sys.argv[1]
def load(name):
    p = os.path.join(out, name)
    return json.load(open(p)) if os.path.exists(p) else None
commit = os.environ.get("OXGEN_COMMIT") or subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
doc = {
    "meta": {"date": datetime.date.today().isoformat(), "commit": commit or "unknown"},
    "denoise": load("denoise.json"),
    "attention": load("attention.json"),
    "attention_causal": load("attention-causal.json"),
    "attention_d128": load("attention-d128.json"),
    "attention_f16": load("attention-f16.json"),
    "attention_long": load("attention-long.json"),
    "decode": load("decode.json"),
    "parallel_gpt_char": load("parallel-gpt-char.json"),
    "parallel_unet_digits": load("parallel-unet-digits.json"),
    "torch": load("torch_anchors.json"),
}
json.dump(doc, open(os.path.join(out, "results.json"), "w"), indent=1)
print("wrote", os.path.join(out, "results.json"))
EOF
}

case $mode in
local)
    out=${2:-bench-results/$(date +%Y-%m-%d)}
    mkdir -p "$out"
    cargo build --release -p oxgen-cli || exit 1
    benchmarks target/release/oxgen "$out"
    [ -f ../shared/peers/torch_anchors.py ] && peer ../shared/peers/torch_anchors.py "$out"
    combine "$out"
    ;;
prepare)
    cargo build --release --workspace || exit 1
    mkdir -p .carry .gl
    strip -o .carry/oxgen target/release/oxgen && gzip -9f .carry/oxgen
    git rev-parse --short HEAD > .carry/commit
    cp ../shared/device/run-gpu.sh ../shared/peers/torch_anchors.py .carry/ 2>/dev/null ||
        echo "../shared not found: the PyTorch peer will be skipped"
    if ! ls .gl/*.deb >/dev/null 2>&1; then
        o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        mkdir -p /tmp/amd64/partial
        apt-get $o update >/dev/null &&
            (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    du -ch .carry .gl | tail -1
    ;;
run)
    out=${2:-${OUT:-bench-results}}
    mkdir -p "$out"
    if ls .gl/*.deb >/dev/null 2>&1; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] &&
        export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    nvidia-smi -L 2>/dev/null | tee "$out/gpu.txt"
    mkdir -p /tmp/oxgen-bin
    gunzip -c .carry/oxgen.gz > /tmp/oxgen-bin/oxgen && chmod +x /tmp/oxgen-bin/oxgen
    export OXGEN_COMMIT=$(cat .carry/commit 2>/dev/null)
    benchmarks /tmp/oxgen-bin/oxgen "$out"
    [ -f .carry/torch_anchors.py ] && peer .carry/torch_anchors.py "$out"
    combine "$out"
    ;;
*)
    sed -n 2,17p "$0"
    exit 2
    ;;
esac
