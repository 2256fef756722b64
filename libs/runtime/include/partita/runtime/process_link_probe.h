#pragma once
// One rank of the message probe `partita profile` runs between two processes of this machine, for the
// planner's link between processes (search/process_layout.h). The ranks talk the way a launched plan's
// processes do: through DistributedGroup's send/receive (its shared-memory mailbox, or Gloo's loopback TCP
// with `shared_memory` off), each rank pinned to a core of its own (core rank mod the cores), as `partita
// run` pins a rank to its device. Rank 0 sends messages of n bytes (at least 8: the send time), each after a
// pause of 1 ms, long enough for rank 1, waiting to receive, to stop spinning and sleep, as a stage does
// while the one before it computes; rank 1 times each from its send to its arrival on the steady clock both
// processes share (waking the receiver included, which a ping-pong between spinning ranks would miss).
// Rank 1 writes the medians of `repeats` (after one untimed warm-up) as {"samples": [{"bytes",
// "seconds"}...]} to `out_path` (cost/link_fit.h's fit_message_link reads them). Throws partita::Error when
// the rendezvous or a message fails.
#include "partita/torch_bridge/loopback_allreduce.h"

namespace partita {

enum class ProcessTransport { kSharedMemory, kGloo };

void run_process_link_probe(const LoopbackWorkerArgs& args, ProcessTransport transport);

// One rank of the all-reduce probe through DistributedGroup's shared-memory exchange (pinned likewise): both
// ranks all-reduce float tensors of each size back to back, as a collective's members arrive close together;
// rank 0 writes the medians of `repeats` (after a warm-up) in the same format (for fit_allreduce_link).
// Throws partita::Error when the group does not share memory.
void run_process_allreduce_probe(const LoopbackWorkerArgs& args);

}  // namespace partita
