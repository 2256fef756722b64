#!/usr/bin/env python3
"""Time one optimizer step (SGD, SGD with momentum, Adam without foreach) over a TorchScript model's trainable
parameters, with random gradients, at 1 and 2 intra-op threads: the figures behind partita's optimizer-step
cost (libs/cost/include/partita/cost/update.h) and behind running the step on the worker with the most threads.

    /usr/bin/python3 bench/optimizer_step.py build/models/resnet18.pt

Median of 10 steps after 2 warm-up steps (the first allocates the optimizer's state). Run on an idle machine.
"""
import statistics
import sys
import time

import torch


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: optimizer_step.py MODEL.pt")
    module = torch.jit.load(sys.argv[1])
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    size = sum(p.numel() * p.element_size() for p in params)
    print(f"{sys.argv[1]}: {len(params)} trainable tensors, {size / 1e6:.1f} MB")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for name, opt in (("sgd", torch.optim.SGD(params, lr=0.01)),
                          ("sgd_momentum", torch.optim.SGD(params, lr=0.01, momentum=0.9)),
                          ("adam", torch.optim.Adam(params, lr=0.01, foreach=False))):
            times = []
            for _ in range(12):
                t0 = time.perf_counter()
                opt.step()
                times.append(time.perf_counter() - t0)
            med = statistics.median(times[2:])
            print(f"  {threads} thread(s) {name:<13} {med * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
