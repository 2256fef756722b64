#!/usr/bin/env bash
# partita's multi-process data parallelism vs PyTorch DistributedDataParallel, side by side on this machine.
#
# For the zoo CNN (8x3x32x32) and the GPT-style decoder (8x128:i64:2048), 2 processes x 1 intra-op thread each,
# rank r pinned to core r, global batch 8 (4 per rank), plain SGD (lr 0.01), the same loss, the same batch:
#   partita: partita plan --strategy data --devices cpu:0,cpu:1 --train --optimizer sgd (batch shares checked
#            4/4), then partita launch -n 2 -- partita run ... --train --steps N
#   DDP:     bench/ddp_train.py (torch.distributed Gloo, torch.jit.load + DistributedDataParallel, spawn)
# The two jobs alternate (the order flips every round); each reports the median wall time per step on rank 0
# after 2 warm-up steps. The table gives, per job, the median over rounds of those medians and their range, and
# partita's throughput / DDP's. Both runs must produce the same losses (checked; they match exactly here).
# Writes or replaces the section "## Multi-process data parallel vs PyTorch DDP" in docs/benchmarks.md ($OUT).
#
#   bench/ddp_compare.sh [--rounds N] [--steps N] [--build DIR] [--models "cnn gpt"] [--no-docs] [--note TEXT]
#   (build first: scripts/build; needs Debian's python3-torch at /usr/bin/python3 and 2 cores; about 1 minute
#   per round of the two models on 2 cores; --note adds a line to the section, e.g. about the machine's load)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=5 steps=20 build=build models="cnn gpt" docs=1 note=""
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --models) models=$2; shift 2 ;;
    --no-docs) docs=0; shift ;;
    --note) note=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "ddp_compare: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
cmdline="bench/ddp_compare.sh --rounds $rounds --steps $steps"
[ "$models" = "cnn gpt" ] || cmdline+=" --models \"$models\""
[ "$build" = build ] || cmdline+=" --build $build"
partita=$(realpath "$build/apps/partita/partita")
zoo=$build/models
out=${OUT:-docs/benchmarks.md}
py=/usr/bin/python3
[ -x "$partita" ] || { echo "ddp_compare: $partita not found: build first (scripts/build)" >&2; exit 1; }
[ "$(nproc)" -ge 2 ] || { echo "ddp_compare: needs 2 cores (cpu:0 and cpu:1)" >&2; exit 1; }
$py -c "import torch.distributed as d; assert d.is_gloo_available()" \
  || { echo "ddp_compare: $py needs torch with Gloo (apt install python3-torch)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
input_of() { case $1 in cnn) echo 8x3x32x32 ;; gpt) echo 8x128:i64:2048 ;; *) $py -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]]['input'][0])" "$zoo/zoo.json" "$1" ;; esac; }

rows=()
for model in $models; do
  input=$(input_of "$model")
  echo "ddp_compare: $model $input: planning" >&2
  "$partita" -q plan "$zoo/$model.pt" --input "$input" --devices cpu:0,cpu:1 --strategy data --all-devices --train \
    --optimizer sgd --json "$tmp/$model.plan.json" >/dev/null
  # The same optimizer as the DDP job, and an even split like DDP's.
  $py - "$tmp/$model.plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
g = p["groups"][p["stages"][0]["group"]]
assert len(p["stages"]) == 1 and g["devices"] == ["cpu:0", "cpu:1"] and g["parallelism"] == "data", g
assert g["batch_shares"] == [4, 4], f"want an even split, the planner gave {g['batch_shares']}"
assert p["optimizer"] == "sgd", p["optimizer"]
PY
  for ((r = 0; r < rounds; r++)); do
    order="partita ddp"; [ $((r % 2)) = 1 ] && order="ddp partita"
    for job in $order; do
      echo "ddp_compare: $model round $((r + 1))/$rounds: $job" >&2
      if [ "$job" = partita ]; then
        "$partita" launch -n 2 -- partita run "$zoo/$model.pt" --input "$input" --plan "$tmp/$model.plan.json" \
          --train --steps "$steps" --json "$tmp/$model.partita.$r.json" >/dev/null
      else
        # The same malloc policy partita applies to itself (libs/core/process_memory.h), so neither job pays
        # page faults for re-allocating its tensors every step.
        MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=67108864 \
          $py bench/ddp_train.py "$zoo/$model.pt" --input "$input" --steps "$steps" \
          --json "$tmp/$model.ddp.$r.json" >/dev/null
      fi
    done
  done
  row=$($py - "$tmp" "$model" "$input" "$rounds" <<'PY'
import json, statistics, sys
tmp, model, inp, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
load = lambda job, r: json.load(open(f"{tmp}/{model}.{job}.{r}.json"))
p = [load("partita", r) for r in range(rounds)]
d = [load("ddp", r) for r in range(rounds)]
worst = max(abs(x - y) / max(abs(x), 1e-12) for a, b in zip(p, d) for x, y in zip(a["losses"], b["losses"]))
assert worst <= 1e-4, f"{model}: partita and DDP losses differ (relative {worst:.2e})"
pm = statistics.median(x["step_ms"] for x in p)
dm = statistics.median(x["step_ms"] for x in d)
rng = lambda xs: f"{min(x['step_ms'] for x in xs):.1f}-{max(x['step_ms'] for x in xs):.1f}"
batch = int(inp.split("x")[0])
print(f"| {model}.pt | {inp} | {pm:.2f} ({rng(p)}) | {batch * 1000 / pm:.0f} | {dm:.2f} ({rng(d)}) | "
      f"{batch * 1000 / dm:.0f} | {dm / pm:.2f}x | {worst:.0e} |")
PY
)
  echo "$row" >&2
  rows+=("$row")
done

table=$(
  echo "## Multi-process data parallel vs PyTorch DDP"
  echo
  echo "Produced by \`$cmdline\` on $(date -u +%Y-%m-%d) — $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs),"
  echo "$(nproc) cores, Debian $(cat /etc/debian_version 2>/dev/null || echo '?'), LibTorch / python3-torch $($py -c 'import torch; print(torch.__version__)')."
  echo "2 processes x 1 intra-op thread, rank r pinned to core r (both: the rank's whole process),"
  echo "OpenBLAS at 1 thread in both, Gloo over loopback, global batch 8 (4 per rank), SGD lr 0.01, the same"
  echo "batch and loss (the zoo's cross-entropy / next-token cross-entropy; the losses of both jobs agree to the"
  echo "relative difference shown). partita = \`partita launch -n 2 -- partita run --train\` on a \`--strategy data\`"
  echo "plan for cpu:0,cpu:1; DDP = \`bench/ddp_train.py\`: torch.jit.load + DistributedDataParallel (25 MB buckets,"
  echo "all-reduce overlapped with backward; buffers not broadcast, the models are traced in eval mode). Step time ="
  echo "rank 0's wall time per step, median of $steps steps after 2 warm-up steps; shown: median over $rounds alternating"
  echo "rounds (range of the round medians). Throughput ratio = partita samples/s / DDP samples/s. Both jobs keep"
  echo "freed memory in the process (partita by mallopt, DDP by the same glibc MALLOC_*_ settings)."
  [ -z "$note" ] || { echo; echo "$note"; }
  echo
  echo "| model | input | partita ms/step (range) | partita samples/s | DDP ms/step (range) | DDP samples/s | partita/DDP throughput | loss rel. diff |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
)
echo "$table"
if [ "$docs" = 1 ]; then
  touch "$out"
  $py - "$out" "$table" <<'PY'
import re, sys
path, section = sys.argv[1], sys.argv[2].rstrip("\n") + "\n"
text = open(path).read()
head = "## Multi-process data parallel vs PyTorch DDP"
start = text.find(head)
if start < 0:
    text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
else:
    nxt = re.search(r"^## ", text[start + len(head):], re.M)
    end = start + len(head) + nxt.start() if nxt else len(text)
    text = text[:start] + section + ("\n" + text[end:] if nxt else "")
open(path, "w").write(text)
PY
  echo "ddp_compare: wrote the section to $out" >&2
fi
