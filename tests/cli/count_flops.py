"""Independent count of parameters and matmul/conv FLOPs of the zoo models, from the module definitions.

Counts 2 FLOPs per multiply-add of every nn.Conv2d and nn.Linear (forward hooks on the modules), plus the two
attention matmuls of the GPT model computed from its definition (they are functional calls, not modules). Bias
adds are counted as one FLOP per output element, as partita does.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "models"))
import make_zoo  # noqa: E402


def count(model, example):
    flops = 0

    def conv_hook(m, inp, out):
        nonlocal flops
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
        flops += 2 * out.numel() * k + (out.numel() if m.bias is not None else 0)

    def linear_hook(m, inp, out):
        nonlocal flops
        flops += 2 * out.numel() * m.in_features + (out.numel() if m.bias is not None else 0)

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(conv_hook)
        elif isinstance(m, torch.nn.Linear):
            m.register_forward_hook(linear_hook)
    with torch.no_grad():
        model(example)
    if isinstance(model, make_zoo.GPT):
        b, t = example.shape
        c = model.tok.embedding_dim
        flops += len(model.layers) * 2 * (2 * b * t * t * c)  # q @ k^T and att @ v over all heads
    return flops


def main():
    expected = {}
    for name in ["mlp", "cnn", "branchy", "gpt", "resnet18", "mobilenet_v2"]:
        ctor, inputs, _, _ = make_zoo.ZOO[name]
        torch.manual_seed(0)
        model = ctor().eval()
        example = make_zoo.make_input(inputs[0])
        params = sum(p.numel() for p in model.parameters())
        expected[name] = {"params": params, "flops": count(model, example)}
    with open(sys.argv[1], "w") as f:
        json.dump(expected, f, indent=2)


if __name__ == "__main__":
    main()
