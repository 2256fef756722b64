# run --power-cap: every CPU package capped for the run and put back after it, also when the run is stopped by
# SIGTERM; against a fake powercap tree (PARTITA_POWERCAP_ROOT), since changing real limits needs root and this
# machine may have none. Bad caps and a machine without RAPL get one clear line.
source "$(dirname "$0")/lib.sh"
export XDG_CACHE_HOME="$WORK/cache"  # the power cap journals (and caches) of this test only
journals="$XDG_CACHE_HOME/partita/power-caps"
root="$WORK/powercap"
for z in 0 1; do
  mkdir -p "$root/intel-rapl:$z"
  echo "package-$z" >"$root/intel-rapl:$z/name"
  echo 1000 >"$root/intel-rapl:$z/energy_uj"
  echo 1000000000 >"$root/intel-rapl:$z/max_energy_range_uj"
  echo 120000000 >"$root/intel-rapl:$z/constraint_0_power_limit_uw"
  echo 200000000 >"$root/intel-rapl:$z/constraint_0_max_power_uw"
done
limits() { cat "$root/intel-rapl:0/constraint_0_power_limit_uw" "$root/intel-rapl:1/constraint_0_power_limit_uw" | tr '\n' ' '; }
"$PARTITA" plan "$ZOO/mlp.pt" --input 8x64 --devices cpu --train --cost roofline --json "$WORK/plan.json" >/dev/null \
  || fail "plan"
run=(run "$ZOO/mlp.pt" --input 8x64 --plan "$WORK/plan.json" --train)

# `partita devices` shows the current limits (what a cap replaces).
PARTITA_POWERCAP_ROOT="$root" "$PARTITA" devices --json "$WORK/devices.json" >"$WORK/devices.txt" || fail "devices"
grep -q "power limit: cpu package-1 120 W" "$WORK/devices.txt" || fail "devices: $(cat "$WORK/devices.txt")"
[ "$(json_get "$WORK/devices.json" "d['power_limits']")" = "[{'device': 'cpu package-0', 'watts': 120.0}, {'device': 'cpu package-1', 'watts': 120.0}]" ] \
  || fail "devices --json power_limits: $(json_get "$WORK/devices.json" "d['power_limits']")"

# A run under a cap: applied (the log says what it replaced), restored afterwards.
PARTITA_POWERCAP_ROOT="$root" "$PARTITA" -v "${run[@]}" --steps 3 --power-cap cpu:50 >"$WORK/out" 2>"$WORK/err" \
  || fail "capped run: $(tail -3 "$WORK/err")"
grep -q "power cap: cpu package-0 at 50 W (was 120 W)" "$WORK/err" || fail "no cap logged: $(cat "$WORK/err")"
grep -q "power cap: cpu package-1 at 50 W (was 120 W)" "$WORK/err" || fail "package-1 not capped"
[ "$(limits)" = "120000000 120000000 " ] || fail "limits not restored after the run: $(limits)"

# Stopped by SIGTERM mid-run: one line, a non-zero exit, and the limits are back.
PARTITA_POWERCAP_ROOT="$root" "$PARTITA" -v "${run[@]}" --steps 100000 --power-cap cpu:50 >"$WORK/out" 2>"$WORK/err" &
pid=$!
for _ in $(seq 1 300); do grep -q "step 3/" "$WORK/err" && break; sleep 0.1; done
[ "$(limits)" = "50000000 50000000 " ] || fail "limits not applied during the run: $(limits)"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -lt 128 ] || fail "SIGTERM: want an error exit, got $rc"
grep -q "stopped by a signal before step" "$WORK/err" || fail "SIGTERM: $(tail -2 "$WORK/err")"
[ "$(limits)" = "120000000 120000000 " ] || fail "limits not restored after SIGTERM: $(limits)"

[ -z "$(ls -A "$journals" 2>/dev/null)" ] || fail "runs that put their caps back left journals: $(ls "$journals")"

# Killed outright (SIGKILL): nothing can restore the limits then, but the journal says what they were:
# `partita devices` names them, and the next run puts them back; a limit changed since the kill (package-1,
# the second time) is left and named.
for attempt in 1 2; do
  PARTITA_POWERCAP_ROOT="$root" "$PARTITA" -v "${run[@]}" --steps 100000 --power-cap cpu:50 >"$WORK/out" 2>"$WORK/err" &
  pid=$!
  for _ in $(seq 1 300); do grep -q "step 3/" "$WORK/err" && break; sleep 0.1; done
  kill -KILL "$pid"
  wait "$pid" 2>/dev/null || true
  [ "$(limits)" = "50000000 50000000 " ] || fail "SIGKILL: the caps should still hold: $(limits)"
  [ -f "$journals/$pid.json" ] || fail "SIGKILL: no journal $journals/$pid.json: $(ls "$journals" 2>&1)"
  if [ "$attempt" = 1 ]; then  # `partita devices` says what was left, and changes nothing
    PARTITA_POWERCAP_ROOT="$root" "$PARTITA" devices --json "$WORK/left.json" >"$WORK/devices.txt" || fail "devices"
    grep -q "note: cpu package-1 was capped at 50 W by partita process $pid, which ended without restoring it (it was 120 W)" \
      "$WORK/devices.txt" || fail "devices should name the caps a killed run left: $(cat "$WORK/devices.txt")"
    [ "$(json_get "$WORK/left.json" "len(d['power_caps_left'])")" = "2" ] || fail "devices --json power_caps_left"
    [ "$(limits)" = "50000000 50000000 " ] || fail "devices changed the limits: $(limits)"
  fi
  if [ "$attempt" = 2 ]; then echo 80000000 >"$root/intel-rapl:1/constraint_0_power_limit_uw"; fi
  PARTITA_POWERCAP_ROOT="$root" "$PARTITA" "${run[@]}" --steps 1 >"$WORK/out" 2>"$WORK/err" \
    || fail "the run after a SIGKILL: $(tail -2 "$WORK/err")"
  grep -q "put cpu package-0 back at 120 W (capped at 50 W by partita process $pid, which ended without restoring it)" \
    "$WORK/err" || fail "package-0 not put back after SIGKILL: $(cat "$WORK/err")"
  if [ "$attempt" = 1 ]; then
    [ "$(limits)" = "120000000 120000000 " ] || fail "limits not put back after SIGKILL: $(limits)"
  else
    grep -q "left cpu package-1 at 80 W: partita process $pid had capped it at 50 W" "$WORK/err" \
      || fail "a limit changed since the kill should be left: $(cat "$WORK/err")"
    [ "$(limits)" = "120000000 80000000 " ] || fail "after SIGKILL and a change: $(limits)"
  fi
  [ ! -e "$journals/$pid.json" ] || fail "the journal of the killed run should be gone once handled"
done
echo 120000000 >"$root/intel-rapl:1/constraint_0_power_limit_uw"

expect_error "its most is 200 W" env PARTITA_POWERCAP_ROOT="$root" "$PARTITA" "${run[@]}" --power-cap cpu:500
expect_error "write DEVICE:WATTS, e.g. cuda:0:250 or cpu:95" "$PARTITA" "${run[@]}" --power-cap cpu
expect_error "cannot cap the power of the CPU: /nonexistent is absent" \
  env PARTITA_POWERCAP_ROOT=/nonexistent "$PARTITA" "${run[@]}" --power-cap cpu:50
# cuda:7: a GPU no test machine has (a real GPU's limit must not change on a shared machine).
expect_error "cannot cap the power of cuda:7" env PARTITA_POWERCAP_ROOT="$root" "$PARTITA" "${run[@]}" \
  --power-cap cuda:7:250
[ "$(limits)" = "120000000 120000000 " ] || fail "a refused cap changed the limits: $(limits)"
finish
