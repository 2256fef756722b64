"""Which threads of a command use the CPU, phase by phase.

    python3 bench/thread_cpu.py [--interval S] -- COMMAND [ARGS...]

Runs COMMAND, and every --interval seconds (default 0.2) reads each of its threads' user and system time from
/proc/PID/task/TID/stat. Each interval belongs to a phase: the last line COMMAND has written to stderr so far,
with digits replaced by '#' (so 'optimize: round 2/3' and 'optimize: round 3/3' are one phase; pass -v to
partita for its log lines). Prints, for every thread seen in more than half of the samples ("long-lived": the
main thread and pools made at start-up, e.g. OpenBLAS's) and for the other threads taken together, its share
of one core in each phase and how much of it was system time. Linux only; the command's stdout goes to
/dev/null.
"""
import collections
import os
import re
import subprocess
import sys
import tempfile
import time


def thread_times(pid):
    """{tid: (user_ticks, system_ticks)} of the process's threads alive now."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[int(tid)] = (int(fields[11]), int(fields[12]))  # utime, stime (fields 14, 15 of stat)
    return out


def last_line(path):
    with open(path, "rb") as f:
        lines = [l for l in f.read().decode(errors="replace").splitlines() if l.strip()]
    return re.sub(r"\d+", "#", lines[-1].strip())[:60] if lines else "(start)"


def main(argv):
    interval = 0.2
    if argv[:1] == ["--interval"]:
        interval, argv = float(argv[1]), argv[2:]
    if argv[:1] != ["--"] or len(argv) < 2:
        sys.exit("usage: thread_cpu.py [--interval S] -- COMMAND [ARGS...]")
    ticks = os.sysconf("SC_CLK_TCK")
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        proc = subprocess.Popen(argv[1:], stdout=subprocess.DEVNULL, stderr=log)
        # phase -> tid -> [user ticks, system ticks]; phase -> seconds; tid -> samples it was seen in
        used = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0]))
        seconds = collections.defaultdict(float)
        seen = collections.Counter()
        samples = 0
        before, t_before = thread_times(proc.pid), time.monotonic()
        while proc.poll() is None:
            time.sleep(interval)
            phase = last_line(log.name)
            now, t_now = thread_times(proc.pid), time.monotonic()
            if not now:
                break
            seconds[phase] += t_now - t_before
            samples += 1
            for tid, (u, s) in now.items():
                seen[tid] += 1
                u0, s0 = before.get(tid, (0, 0))
                used[phase][tid][0] += u - u0
                used[phase][tid][1] += s - s0
            before, t_before = now, t_now
        proc.wait()
    long_lived = sorted(tid for tid, n in seen.items() if n > samples / 2)
    print(f"exit status {proc.returncode}; {samples} samples; long-lived threads: {long_lived} (the lowest id is "
          "the main thread)")
    print(f"{'phase (last stderr line)':<62} {'seconds':>7}  thread: share of one core (system part)")
    for phase, secs in sorted(seconds.items(), key=lambda kv: -kv[1]):
        if secs < 5 * interval:
            continue
        cells = []
        others = [sum(v[k] for tid, v in used[phase].items() if tid not in long_lived) for k in (0, 1)]
        for who in long_lived + ["other threads"]:
            u, s = others if who == "other threads" else used[phase].get(who, (0, 0))
            share = (u + s) / ticks / secs
            cells.append(f"{who}: {100 * share:.0f}% ({100 * s / ticks / secs:.0f}%)")
        print(f"{phase:<62} {secs:7.1f}  " + ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
