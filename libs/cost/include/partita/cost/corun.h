#pragma once
// How much longer a step of a synchronous plan takes than one worker's step measured alone.
//
// Model: the workers of a data-parallel or pipelined plan on CPU core groups of one machine run their work at
// once and every step waits for the slowest of them (all-reduce, stage hand-offs). Two effects make that step
// longer than the cost table's single-worker figure:
//   contention: workers running at once share caches and memory bandwidth, so each is slower than alone
//               (the row's worker together over alone);
//   stragglers: on a shared VM each core switches speed on its own (bench/core_modes.py; on this project's
//               Intel VM per-core modes last 0.5-4 s and differ up to 2x between the two cores), so the step
//               takes the slowest worker's time, whose median exceeds any one worker's median (the median
//               over steps of the largest of each worker's time over its own median).
// slowdown = contention x stragglers. Assumptions: the measurement ran the same work on every worker, with
// the workers starting each step together, and long enough to see the machine's speed modes. partita's (in
// apply_profiled_costs) spans at least 2 s, about one slow stretch here, so its figure varies between runs
// (GPT 8x128 training on this VM, two runs seconds apart: x1.27 and x1.56). Contention is a ratio of noisy
// medians and can come out below 1, so it is clamped at 1 (running beside another worker never speeds one
// up); stragglers is at least 1 by construction (each step's largest ratio is at least worker 0's, whose
// median is 1) and exactly 1 for one worker or for workers whose slow steps coincide.
#include <vector>

namespace partita {

// One round of a co-run measurement: the row's worker alone, then every worker at once, close together in
// time so that a change of the machine's speed between rounds hits both alike.
struct CoRunRound {
  std::vector<double> alone;  // seconds per step, the row's worker running alone
  std::vector<std::vector<double>>
      together;  // [step][worker]: seconds, all workers at once; worker 0 = the row's
};

struct CoRunSlowdown {
  // Median over rounds of worker 0's median together over its median alone (paired within a round, since this
  // VM's whole speed also changes by up to 1.7x over minutes), at least 1.
  double contention = 1.0;
  // Median over all together steps of max_w (time / worker w's median over all rounds): a worker slow for a
  // whole round is a straggler, not contention.
  double stragglers = 1.0;
  std::vector<double> round_contention;  // each round's ratio, unclamped (for the log)
  double factor() const { return contention * stragglers; }
};

// Throws partita::Error when there is no round, a round has no lone or no together step, a together step does
// not have one time per worker, or a time is not positive.
CoRunSlowdown corun_slowdown(const std::vector<CoRunRound>& rounds);

}  // namespace partita
