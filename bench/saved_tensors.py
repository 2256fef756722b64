#!/usr/bin/env python3
"""What autograd keeps for backward after one forward of a TorchScript model, grouped by backward node and
saved field: the reference that partita's activation model (libs/cost/src/memory.cpp) is checked against.

  /usr/bin/python3 bench/saved_tensors.py build/models/mobilenet_v2.pt 1x3x112x112

Walks the autograd graph from the output and reads each backward node's `_saved_*` tensors, counting each
storage once (parameters and buffers excluded). partita's `estimate --train` reports what is still saved at
the peak moment of backward (less than this total when the peak comes after backward has freed some); its
`--measure` gives the real peak to compare the whole model with.
Needs Debian's python3-torch (/usr/bin/python3). Float inputs only (the spec is a plain shape).
"""
import collections
import sys

import torch


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: saved_tensors.py MODEL.pt SHAPE (e.g. 8x3x32x32)")
    model = torch.jit.load(sys.argv[1])
    model.train()
    shape = [int(d) for d in sys.argv[2].split("x")]
    output = model(torch.randn(*shape))
    weights = {t.data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    storages, by_field = {}, collections.defaultdict(int)
    stack, visited = [output.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in visited:
            continue
        visited.add(fn)
        for name in dir(fn):
            if not name.startswith("_saved_"):
                continue
            try:
                value = getattr(fn, name)
            except RuntimeError:  # freed or not a tensor field
                continue
            for t in value if isinstance(value, (tuple, list)) else [value]:
                if not isinstance(t, torch.Tensor):
                    continue
                key = t.storage().data_ptr()
                if key in weights or key in storages:
                    continue
                storages[key] = t.storage().nbytes()
                by_field[(type(fn).__name__, name)] += storages[key]
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    print(f"saved for backward: {sum(storages.values()) / 2**20:.3f} MiB in {len(storages)} storages")
    for (fn, field), size in sorted(by_field.items(), key=lambda kv: -kv[1]):
        print(f"  {fn:32s} {field:16s} {size / 2**20:9.3f} MiB")


if __name__ == "__main__":
    main()
