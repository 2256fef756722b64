#!/usr/bin/python3
"""Plain PyTorch DistributedDataParallel training of a TorchScript model: the baseline for partita's
multi-process data parallelism (bench/ddp_compare.sh).

Does what `partita launch -n N -- partita run MODEL --input SPEC --plan P --train` does, with PyTorch's own tools:
N processes (torch.multiprocessing, start method spawn), Gloo, each rank pinned to core `rank` with one intra-op
thread, the TorchScript module from torch.jit.load wrapped in DistributedDataParallel (torch 1.13 accepts a
ScriptModule: it is an nn.Module whose parameters are ordinary leaf tensors, so DDP's gradient hooks fire), the
same global batch as partita (inputs from a generator seeded 11, targets seeded 12, as partita's run does), an
even split of it over the ranks, the same loss (partita's auto rule: next-token cross-entropy for a 2-D integer
input and a 3-D output, cross-entropy for a 2-D output) and plain SGD. Rank 0 times every step
(wall time of zero_grad + forward + loss + backward with DDP's bucketed all-reduce + optimizer step) after
`--warmup` steps, like partita's run. Run with Debian's python3 (python3-torch 1.13); the pyenv python has no torch.

    /usr/bin/python3 bench/ddp_train.py MODEL.pt --input 8x128:i64:2048 --steps 20 --json out.json
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time

# Before torch loads OpenMP/OpenBLAS: one thread each per rank, as partita's engine sets them when several
# replicas share the machine (OpenBLAS's own pool would otherwise add threads next to the pinned one).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402


def parse_spec(spec):
    dims, _, rest = spec.partition(":")
    shape = [int(d) for d in dims.split("x")]
    dtype = rest.split(":")[0] if rest else "f32"
    high = int(rest.split(":")[1]) if rest.count(":") else 100
    return shape, dtype, high


def make_input(spec, seed):
    """partita's make_inputs: one CPU generator seeded `seed`, randint for integer specs, randn otherwise."""
    shape, dtype, high = parse_spec(spec)
    g = torch.Generator().manual_seed(seed)
    if dtype == "i64":
        return torch.randint(0, high, shape, generator=g, dtype=torch.int64)
    if dtype != "f32":
        sys.exit(f"ddp_train: input dtype {dtype} is not supported here (f32 or i64)")
    return torch.randn(shape, generator=g)


def loss_kind(requested, x, out):
    if requested != "auto":
        return requested
    if not x.is_floating_point() and out.dim() == 3 and x.dim() == 2:
        return "next_token"
    if out.dim() == 2 and out.size(1) > 1:
        return "cross_entropy"
    return "mse"


def local_loss(kind, out, target):
    """Mean over this rank's samples; DDP averages gradients over ranks, so the update is the global mean's,
    as in partita (which sums per-sample losses / global batch and sums gradients over ranks)."""
    if kind == "cross_entropy":
        return F.cross_entropy(out, target)
    if kind == "next_token":
        vocab = out.size(2)
        return F.cross_entropy(out[:, :-1].reshape(-1, vocab), target[:, 1:].reshape(-1))
    return F.mse_loss(out, target)


def rank_main(rank, args):
    world = args.nproc
    if args.pin and len(os.sched_getaffinity(0)) >= world:
        # The main thread computes forward and backward (CPU autograd runs on the calling thread); threads made
        # later (Gloo's) inherit this mask. partita pins only its worker thread to the core.
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank]})
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)

    model = torch.jit.load(args.model)
    ddp = DDP(model, broadcast_buffers=args.broadcast_buffers, bucket_cap_mb=args.bucket_mb)
    x = make_input(args.input, 11)
    batch = x.size(0)
    if batch % world:
        sys.exit(f"ddp_train: global batch {batch} does not split evenly over {world} ranks")
    share = batch // world
    with torch.no_grad():
        probe = model(x[:1])
    kind = loss_kind(args.loss, x, probe)
    g = torch.Generator().manual_seed(12)
    if kind == "cross_entropy":
        target = torch.randint(0, probe.size(1), (batch,), generator=g, dtype=torch.int64)
    elif kind == "next_token":
        target = x
    else:
        target = torch.randn((batch,) + tuple(probe.shape[1:]), generator=g)
    xs, ts = x[rank * share:(rank + 1) * share], target[rank * share:(rank + 1) * share]
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr)

    step_ms, losses = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = local_loss(kind, ddp(xs), ts)
        loss.backward()
        opt.step()
        ms = (time.perf_counter() - t0) * 1000.0
        if i >= args.warmup:
            step_ms.append(ms)
            losses.append(loss.item())

    # Checks, after timing: the global loss per step (mean of the ranks' means) and that the replicas agree.
    global_losses = torch.tensor(losses, dtype=torch.float64)
    dist.all_reduce(global_losses)
    global_losses /= world
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()])
    sums = [torch.zeros_like(checksum) for _ in range(world)]
    dist.all_gather(sums, checksum)
    in_sync = all(torch.equal(sums[0], s) for s in sums[1:])
    dist.destroy_process_group()
    if rank != 0:
        return
    med = statistics.median(step_ms)
    result = {
        "model": args.model, "input": args.input, "nproc": world, "threads": args.threads, "loss": kind,
        "optimizer": "sgd", "lr": args.lr, "pinned": args.pin, "bucket_mb": args.bucket_mb,
        "step_ms": med, "step_ms_all": step_ms, "spread_ms": max(step_ms) - min(step_ms),
        "samples_per_second": batch * 1000.0 / med if med > 0 else 0.0,
        "losses": global_losses.tolist(), "replicas_in_sync": in_sync,
        "torch": torch.__version__,
    }
    print(f"ddp: step time {med:.2f} ms median of {len(step_ms)} (spread {result['spread_ms']:.2f} ms), "
          f"loss {result['losses'][0]:.5f} -> {result['losses'][-1]:.5f}, replicas in sync: {in_sync}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if not in_sync:
        sys.exit("ddp_train: the replicas' parameters differ after training")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--input", required=True, help="partita's spec, e.g. 8x3x32x32 or 8x128:i64:2048")
    ap.add_argument("--steps", type=int, default=20, help="timed steps, after --warmup")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (partita run uses 2)")
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per rank")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--loss", default="auto", choices=["auto", "cross_entropy", "next_token", "mse"])
    ap.add_argument("--bucket-mb", type=float, default=25.0, help="DDP's bucket_cap_mb (its default: 25)")
    ap.add_argument("--broadcast-buffers", action="store_true",
                    help="DDP's default; off here because the zoo's models are traced in eval mode, so their "
                         "buffers never change (partita does not broadcast them either)")
    ap.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin rank r to core r")
    ap.add_argument("--port", type=int, default=0, help="rendezvous port (default: a free one)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.port == 0:
        args.port = free_port()
    mp.start_processes(rank_main, args=(args,), nprocs=args.nproc, start_method="spawn")


if __name__ == "__main__":
    main()
