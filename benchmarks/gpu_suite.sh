#!/usr/bin/env bash
# The commands behind the GPU tables of benchmarks/README.md, in parts that each fit one 10-minute
# device call: `bash benchmarks/gpu_suite.sh a OUT`, `... b OUT` and `... c OUT` (a: the targets'
# speed and memory, eager and compiled; b: other layouts and the loader; c: the kernel profile,
# eager then compiled, and quality at equal time). Their timeouts add up to 570 s (a), 350 s (b)
# and 470 s (c). A 15-minute device budget holds one part, not a then c: the machine's start-up
# (1-2 minutes) and a leave c 3.5 minutes or more, so call c after a with what is left as its
# timeout: its commands run in that order, so a cut call still returns the profiles finished by
# then; quality at equal time needs c alone (or first). JSON lines go to OUT/<name>.jsonl, every
# log to OUT/log.txt (the device returns at most 8 files); one command failing or timing out does
# not stop the rest.
# SMOKE="--tiny --device cpu --frames 9 --size 32 --batch-size 1 --steps 1 --warmup 0" runs the same
# commands at test size on a CPU (to check the script before spending device time; part b's old
# layout then keeps its shape at test widths, [16,32,64,64]), with
# DATA_SMOKE="--size 32 --frames 5 --batches 2" DATA_SOURCES=144p DATA_WORKERS=0 for the data part and
# QUALITY_SMOKE="--tiny --device cpu --frames 9 --size 32 --batch-size 1" QUALITY_SECONDS=2 for part c.
set -u
part=${1:?part a, b or c}
out=${2:?output folder}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
smoke=${SMOKE:-}
data_smoke=${DATA_SMOKE:-}

bench() {  # bench NAME SECONDS MODULE ARGS...
  local name=$1 seconds=$2
  shift 2
  echo "== $name ($(date +%T))"
  local extra=$smoke
  [ "$1" = benchmarks.data ] && extra=$data_smoke  # its own size flags
  [ "$1" = benchmarks.quality_at_budget ] && extra=${QUALITY_SMOKE:-}  # no --steps or --warmup
  local before=0  # lines other commands of the same name wrote there before: not shown again
  [ -f "$out/$name.jsonl" ] && before=$(wc -l <"$out/$name.jsonl")
  timeout "$seconds" python3 -m "$@" $extra >>"$out/$name.jsonl" 2>>"$out/log.txt" || echo "   $name: exit $?"
  tail -n +"$((before + 1))" "$out/$name.jsonl" | grep '^{' | cut -c1-400
}

old_widths='[128,256,512,512]'
# --set is applied after --tiny's widths and would win: under SMOKE the same layout at test widths
[ -n "$smoke" ] && old_widths='[16,32,64,64]'
old_layout=(--set patch_size=1 --set "block_out_channels=$old_widths")
steps=(--steps 6 --warmup 2)  # per model; SMOKE's flags come later and win
if [ "$part" = a ]; then  # the targets: the shipped preset eager and compiled (its GPU default) against the baselines
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
  bench train_step 200 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines wan,cogvideox,ltx "${steps[@]}"
  bench train_step_variants 140 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines '' --compile "${steps[@]}"
  bench inference 150 benchmarks.inference --config configs/fsq_4x8x8.yaml --baselines wan,cogvideox,ltx "${steps[@]}"
  bench quantizers 80 benchmarks.quantizers --presets configs/gq_4x8x8.yaml
elif [ "$part" = b ]; then
  bench train_step_variants 50 benchmarks.train_step --config configs/fsq_4x8x8.yaml --baselines '' "${steps[@]}"
  bench train_step_variants 50 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines '' "${old_layout[@]}" "${steps[@]}"
  bench train_step_variants 50 benchmarks.train_step --config configs/kl_4x8x8.yaml --baselines '' --channels-last "${steps[@]}"
  bench data 200 benchmarks.data --paths sources --sources "${DATA_SOURCES:-720p,1080p}" --workers "${DATA_WORKERS:-1,4,8}" \
    --size 256 --frames 17 --batch-size 2 --source-videos 4 --source-frames 48 --batches 8
elif [ "$part" = c ]; then
  bench profile_step 100 benchmarks.profile_step --config configs/kl_4x8x8.yaml --steps 3 --warmup 2 --top 25
  bench profile_step 130 benchmarks.profile_step --config configs/kl_4x8x8.yaml --steps 3 --warmup 2 --top 25 --compile
  # vtok compiled, as the preset trains on a GPU (compilation falls in the first step, which is not timed);
  # 60 s of training per model, validation eager (no recompiling): 240 s holds both processes
  bench quality_at_budget 240 benchmarks.quality_at_budget --config configs/kl_4x8x8.yaml --compile \
    --seconds "${QUALITY_SECONDS:-60}"
else
  echo "part must be a, b or c" >&2
  exit 2
fi
