#!/usr/bin/python3
"""Builds partita's model zoo: small real PyTorch models saved as TorchScript (torch.jit.trace; one scripted).

Run with Debian's python3 (python3-torch, python3-torchvision). No weights are downloaded: every model is
randomly initialised with a fixed seed. Writes <out>/<name>.pt and <out>/zoo.json with each model's example
input spec (partita's --input syntax) and whether it is meant for training.

    /usr/bin/python3 models/make_zoo.py OUT_DIR [--only NAME ...]
"""
import argparse
import json
import math
import os
import sys
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d_in=64, hidden=256, d_out=10):
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, d_out)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class SmallCNN(nn.Module):
    """Three conv + batch norm + ReLU blocks, then a classifier."""

    def __init__(self, classes=10):
        super().__init__()
        chans = [3, 16, 32, 64]
        layers = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(64 * 4 * 4, classes)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class InceptionBlock(nn.Module):
    """Four independent branches of comparable cost, concatenated (GoogLeNet-style)."""

    def __init__(self, c_in, c_branch):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(c_in, c_branch, 1), nn.ReLU(),
                                nn.Conv2d(c_branch, c_branch, 3, padding=1), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(c_in, c_branch, 1), nn.ReLU(),
                                nn.Conv2d(c_branch, c_branch, 3, padding=1), nn.ReLU(),
                                nn.Conv2d(c_branch, c_branch, 3, padding=1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(c_in, c_branch, 1), nn.ReLU(),
                                nn.Conv2d(c_branch, c_branch, 5, padding=2), nn.ReLU())
        self.b4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(c_in, c_branch, 1), nn.ReLU(),
                                nn.Conv2d(c_branch, c_branch, 3, padding=1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class Branchy(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU())
        self.block1 = InceptionBlock(32, 32)
        self.block2 = InceptionBlock(128, 32)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(128, classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        return self.head(torch.flatten(self.pool(x), 1))


class CausalSelfAttention(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.scale = 1.0 / math.sqrt(width // heads)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x):
        b, t, c = x.size()
        q, k, v = self.qkv(x).split(c, dim=2)
        hd = c // self.heads
        q = q.view(b, t, self.heads, hd).transpose(1, 2)
        k = k.view(b, t, self.heads, hd).transpose(1, 2)
        v = v.view(b, t, self.heads, hd).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        mask = torch.full((t, t), float("-inf"), device=x.device).triu(1)
        att = torch.softmax(scores + mask, dim=-1)
        y = torch.matmul(att, v).transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(y)


class DecoderLayer(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    """GPT-style decoder written with plain tensor ops: token + position embedding, causal self-attention via
    matmul/softmax, layer norm, GELU MLP, tied-free LM head."""

    def __init__(self, vocab=2048, width=256, heads=4, layers=4, seq=128):
        super().__init__()
        self.tok = nn.Embedding(vocab, width)
        self.pos = nn.Embedding(seq, width)
        self.layers = nn.ModuleList([DecoderLayer(width, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, idx):
        t = idx.size(1)
        pos = torch.arange(t, device=idx.device)
        x = self.tok(idx) + self.pos(pos)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.ln_f(x))


class ScriptedCNN(nn.Module):
    """Saved with torch.jit.script, not traced: forward() reads attributes that are not tensors (batch norm's
    and dropout's self.training, a float, an int, a flag, a bias that is None) and checks its input's shape
    with a branch that raises. partita folds the attributes as train() or eval() left them and drops the
    check (the module itself checks the example input once)."""

    extra: Optional[torch.Tensor]

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.25)
        self.head = nn.Linear(8 * 16 * 16, 10)
        self.scale = 0.5
        self.pool = 2
        self.residual = True
        self.extra = None

    def forward(self, x):
        if x.dim() != 4:
            raise ValueError("ScriptedCNN expects a 4-d input (batch, 3, height, width)")
        y = torch.relu(self.bn(self.conv(x)))
        if self.residual:
            y = y + x.mean(1, keepdim=True)
        y = F.max_pool2d(y, self.pool)
        extra = self.extra
        if extra is not None:
            y = y + extra
        return self.head(self.drop(torch.flatten(y, 1))) * self.scale


class ScriptedGRU(nn.Module):
    """A GRU and a linear head, saved with torch.jit.script: the scripted GRU hands aten::gru the list of its
    weights (_flat_weights, a List[Tensor] attribute), branches on its input's rank (is_batched = input.dim() ==
    3), checks its input's shapes, and reads batch_first."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


class ScriptedPrints(nn.Module):
    """A linear layer whose scripted forward() prints: print() and str.format() take a variable number of
    arguments, whose count the TorchScript interpreter pushes after them."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        print("{} rows".format(x.size(0)), "of", x.size(1))
        return self.fc(x)


class ScriptedLoops(nn.Module):
    """Loops a trace unrolls, saved with torch.jit.script: one over a count attribute (range(self.repeats)),
    and F.interpolate's over the input's spatial dimensions (range(input.dim() - 2), a count the run fixes)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.repeats = 2

    def forward(self, x):
        y = self.conv(x)
        for _ in range(self.repeats):
            y = torch.relu(y) * 0.5 + y
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)


class ScriptedNoGrad(nn.Module):
    """A target computed inside `with torch.no_grad():` in a scripted forward() (as a distillation or an EMA
    teacher would): no gradient flows through it, and a grad-mode test inside the block reads False."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.target = nn.Linear(16, 16)

    def forward(self, x):
        y = self.fc(x)
        with torch.no_grad():
            t = torch.tanh(self.target(y))
            if torch.is_grad_enabled():
                t = t * 0
        return (y - t) ** 2


class ScriptedEncoder(nn.Module):
    """A batch-first torch.nn transformer encoder (two layers, dropout) over a linear embedding, saved with
    torch.jit.script. Its forward() branches on what a run fixes, not on the input's values: multi-head
    attention's `query.dim() == 3`, the encoder's and each layer's fast-path tests (the devices of its tensors,
    grad mode, autocast, whether its weights require gradients). In inference without grad the layers take
    torch.nn's fused kernel (aten::_transformer_encoder_layer_fwd); in training the plain one."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(16, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2)
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


class DataDependent(nn.Module):
    """Not traceable into a straight-line graph: scripted, it keeps a prim::If (partita must refuse it)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        if bool(x.sum() > 0):
            return self.fc(x)
        return x


class RankChecked(nn.Module):
    """Scripted, and reads no attribute that is not a submodule: its forward() only checks its input's rank
    (raising otherwise) and adds a batch dimension to a single sample."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if x.dim() < 1 or x.dim() > 2:
            raise ValueError("RankChecked takes (batch, 8) or (8,)")
        if x.dim() == 1:
            x = x.unsqueeze(0)
        return self.fc(x)


class BakedBatch(nn.Module):
    """Traced with a literal batch in a reshape: runs at other batch sizes but mixes samples (a split breaks it)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return self.fc(x).view(4, -1)


class FusedEncoder(nn.Module):
    """A transformer encoder layer traced in eval mode under no_grad: torch.nn takes its fused inference kernel
    (aten::_transformer_encoder_layer_fwd), which has no derivative (partita must refuse to train it)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.layer(x))


class LastStepLSTM(nn.Module):
    """An LSTM whose final states go unused (batch in dim 1): the batch check must not count them."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y, _ = self.lstm(x)
        return self.head(y[:, -1])


class FinalStateLSTM(nn.Module):
    """A classifier on the last layer's final hidden state: the batch sits in dim 1 of h_n, then back in dim 0
    after h[-1]; every sample is still computed on its own, so the batch splits."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.head(h[-1])


class ScrambledBatch(nn.Module):
    """Transposes the batch into dim 1, then reshapes it back to [batch, features]: each row mixes samples, so a
    split batch computes something else (the batch check must refuse it)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(x.t().reshape(x.shape[0], -1))


class SequenceFirstOutput(nn.Module):
    """Returns its [batch, time, features] result sequence-first, [time, batch, features]: every sample is
    computed on its own, but a split batch's outputs would have to be joined along dim 1 (the batch check must
    refuse it and say to return the batch in dim 0)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)

    def forward(self, x):
        return self.proj(x).transpose(0, 1)


class DictOutput(nn.Module):
    """Returns a dict, as torchvision's segmentation models do (traced with strict=False): partita imports it as
    the tuple of the dict's values."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(16, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return {"logits": self.head(h), "features": h}


class NestedDictOutput(nn.Module):
    """Returns a dict inside a tuple (traced with strict=False): refused at import, naming the dict."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(x), {"aux": x.sum(1)}


class BatchCentered(nn.Module):
    """Subtracts the batch mean: each output follows the batch in dim 0, but mixes samples (the batch check
    must keep its batch whole)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(x - x.mean(0))


class BatchFlipped(nn.Module):
    """Reverses the batch (x.flip(0)): every node's output keeps the batch's shape, yet each half of a batch
    comes back in another order than the whole's (only the two-halves run can see it; the batch stays whole)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(x).flip(0)


class ShuffledBatch(nn.Module):
    """Shuffles the batch with a random permutation (torch.randperm): an integer draw, which no expected value
    stands for, that mixes samples; the halves differ and the batch stays whole. Adds integer noise too
    (randint, randint_like), so every integer draw is exercised."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.head(x)[torch.randperm(x.shape[0])]
        return h + 0.01 * torch.randint_like(h, 5) + 0.001 * torch.randint(0, 3, (x.shape[0], 1)).to(h.dtype)


class BatchNormMLP(nn.Module):
    """An MLP with BatchNorm1d traced in train mode: on one sample every channel's variance is 0 and the
    normalized output is the bias alone, so no microbatch or replica may hold a single sample."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.bn = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


class DropoutEncoder(nn.Module):
    """torch.nn's transformer encoder layer in its default sequence-first layout, with dropout, traced in train
    mode: the batch sits in dim 1 inside and dropout draws a new mask per run, yet the batch splits (each
    replica drawing its own mask, as under DDP)."""

    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.layer(x.transpose(0, 1)).mean(0))


class Stochastic(nn.Module):
    """Random draws in training: dropout of each kind ATen has (plain, in place, per channel, alpha, per
    channel alpha), the reparameterization of a variational autoencoder (mu + randn_like * std), additive
    uniform noise, stochastic binary units (bernoulli) and one noise vector for the whole batch (randn(8)).
    The batch splits (each share drawing its own), and a checkpointed stage must replay its forward's draws in
    backward."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.mu = nn.Linear(64, 16)
        self.logvar = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 32)
        self.head = nn.Linear(32, 8)

    def forward(self, x):
        h = F.dropout(torch.relu(self.fc1(x)), 0.2, True)
        h = F.dropout(h, 0.1, True, inplace=True)
        h = F.dropout1d(h.view(-1, 8, 8), 0.25, True).view(-1, 64)
        h = F.alpha_dropout(h, 0.1, True)
        h = F.feature_alpha_dropout(h.view(-1, 8, 8), 0.1, True).view(-1, 64)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        h = torch.sigmoid(self.fc2(z)) + 0.01 * torch.rand_like(mu).sum(1, keepdim=True)
        return self.head(h * torch.bernoulli(torch.sigmoid(h))) + 0.01 * torch.randn(8)


class DropoutMLP(nn.Module):
    """Dropout where tensor parallelism keeps activations whole: on the input and after each row-split linear
    (all-reduced, so every device of the group holds the whole activation). Every device must draw the same
    mask there, as one device would."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 32)
        self.fc3 = nn.Linear(32, 64)
        self.fc4 = nn.Linear(64, 8)

    def forward(self, x):
        h = self.fc2(torch.relu(self.fc1(F.dropout(x, 0.1, True))))
        h = self.fc4(torch.relu(self.fc3(F.dropout(h, 0.2, True))))
        return F.dropout(h, 0.1, True)


class ForkedHeads(nn.Module):
    """Two linear heads read one hidden activation (a variational autoencoder's mean and log-variance, without
    the noise): tensor parallelism splits the hidden activation once and both heads close that pair (each a
    row split, all-reduced)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 64)
        self.mu = nn.Linear(64, 16)
        self.logvar = nn.Linear(64, 16)
        self.dec = nn.Linear(16, 8)

    def forward(self, x):
        h = torch.relu(self.fc(x))
        return self.dec(self.mu(h) * torch.exp(0.5 * self.logvar(h)))


class PythonNumbers(nn.Module):
    """Python numbers meet integer tensors: the trace records each number as a 0-d float64 or int64 tensor, yet
    in Python (and TorchScript) `0.5 * mask` is float32. The output must stay float32 (not float64), in values
    and in dtype."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 16)

    def forward(self, x):
        positive = (x > 0).long()
        return self.head(x) + 0.5 * positive - (positive - 1.5) + positive / 4


class OwnLoss(nn.Module):
    """Returns a 0-d tensor (its own loss, a mean over the batch): no split batch can be joined, and partita's
    training, which computes the loss from per-sample outputs, must refuse it."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 16)

    def forward(self, x):
        return (self.head(x) ** 2).mean()


class ParameterFree(nn.Module):
    """No parameters: nothing to train (partita must refuse --train with one line)."""

    def forward(self, x):
        return torch.relu(x) * 2


class ArgmaxFirst(nn.Module):
    """Returns (argmax, logits): the first output, which partita computes the loss from, is int64 (partita must
    refuse --train with one line)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = self.head(x)
        return y.argmax(1), y


class TiedEnds(nn.Module):
    """A token embedding tied to the output layer (GPT-2's weight tying), three linear layers between: a
    pipeline's first and last stages both read the table, so a rank of each keeps it when pipeline ranks release
    the weights only other stages read, and the reducer sums its two gradients."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 32)
        self.l1, self.l2, self.l3 = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 32)

    def forward(self, ids):
        h = torch.relu(self.l1(self.emb(ids)))
        return torch.relu(self.l3(torch.relu(self.l2(h)))) @ self.emb.weight.t()


class SharedMatrix(nn.Module):
    """Takes a second input without the batch, a 16x16 matrix every sample uses (`--input 16x16:shared`):
    plans split x and hand w whole to every device, replica and microbatch, in the first nodes and the last.
    The softmax over w alone is batch-free. Given without ':shared', the second input is refused as one
    without the first's batch."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(16, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x, w):
        return self.head(torch.relu(self.inner(x @ torch.softmax(w, dim=-1)))) * w[0, :4]


class MaskedTokens(nn.Module):
    """forward(mask, ids) takes its input without the batch first: a causal 8x8 mask every sample uses
    (`--input 8x8:bool:shared --input 4x8:i64:100`). The batch comes from the second input, and the
    next-token loss reads those ids."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 100)

    def forward(self, mask, ids):
        h = self.embed(ids)
        scores = (h @ h.transpose(1, 2)).masked_fill(~mask, -1e4)
        return self.head(torch.softmax(scores, dim=-1) @ h)


class ScalesItsInput(nn.Module):
    """Updates its input in place (x.mul_(0.5), as a model normalizing pixels with x.div_(255) would): repeated
    runs on one batch and replicas on views of it must not see each other's writes."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x.mul_(0.5)
        return self.head(x)


class ScalesItsInputThroughAView(nn.Module):
    """Updates half of its input's features in place through a view (x[:, :8].mul_(0.5)): as scales_input, but
    the write reaches the input only through the view."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        x[:, :8].mul_(0.5)
        return self.head(x)


class FillsABuffer(nn.Module):
    """Builds its features in a fresh tensor by slice assignment and reads that tensor afterwards: the trace
    leaves the head reading z itself, ordered after the two copy_ writes into z's slices only by node order."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        z = x.new_zeros(x.size(0), 32)
        z[:, :16] = self.a(x)
        z[:, 16:] = x.roll(1, dims=1).flip(1)
        return self.head(z)


class PairedHalves(nn.Module):
    """Pairs sample i of the batch's first half with sample i of its second half (x.chunk(2, 0)) and returns
    one row per pair: half as many output rows as samples, so every plan keeps the batch whole and the
    training targets follow the traced output's 4 rows, not the batch's 8."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 32)
        self.b = nn.Linear(32, 4)

    def forward(self, x):
        first, second = x.chunk(2, 0)
        return self.b(torch.relu(self.a(first))) - self.b(torch.relu(self.a(second)))


class EmbeddingMaxNorm(nn.Module):
    """nn.Embedding(max_norm=1.0): forward() renormalizes the rows it looks up in place (aten::embedding_renorm_
    on the weight) before reading them."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 16, max_norm=1.0)
        self.head = nn.Linear(16, 4)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(1))


class WritesSavedInput(nn.Module):
    """Zeroes half of a hidden tensor in place through a view after a linear layer saved that tensor for its
    gradient: PyTorch's autograd refuses the backward ("modified by an inplace operation")."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        h = self.a(x)
        k = self.b(h)
        h[:, :8].mul_(0.0)
        return self.head(k + h)


class CountsItsCalls(nn.Module):
    """Adds 1 to a buffer on every forward and scales its output by it: its results depend on how often
    forward has run, so partita refuses it at load."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        self.calls.add_(1)
        return self.head(x) * self.calls


class ClampsItsWeight(nn.Module):
    """Clamps its weight in place under torch.no_grad() in forward (the trace keeps the write, not the
    no_grad): refused at load like CountsItsCalls."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        with torch.no_grad():
            self.head.weight.clamp_(-0.1, 0.1)
        return self.head(x)


class DropsRows(nn.Module):
    """Returns only the rows whose outputs sum above 0 (y[y.sum(1) > 0]): how many depends on the data, so
    training cannot give it targets drawn for its traced shape."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        y = self.head(x)
        return y[y.sum(1) > 0]


class PairInput(nn.Module):
    """Takes a tuple of two tensors as its one argument: partita gives every --input as one tensor, so the
    importer must refuse it with one line."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 4)

    def forward(self, pair):
        x, y = pair
        return self.head(x) + self.head(y)


def torchvision_model(name):
    import torchvision
    return getattr(torchvision.models, name)(weights=None)


# name -> (constructor, input spec, trains, traced in training mode)
ZOO = {
    "mlp": (MLP, ["32x64"], True, False),
    "cnn": (SmallCNN, ["8x3x32x32"], True, False),
    "cnn_train": (SmallCNN, ["8x3x32x32"], True, True),
    "branchy": (Branchy, ["8x3x32x32"], True, False),
    "gpt": (GPT, ["8x128:i64:2048"], True, False),
    "baked_batch": (BakedBatch, ["8x16"], False, False),
    "resnet18": (lambda: torchvision_model("resnet18"), ["2x3x112x112"], True, False),
    "mobilenet_v2": (lambda: torchvision_model("mobilenet_v2"), ["2x3x112x112"], True, False),
}


def make_input(spec):
    dims, _, rest = spec.partition(":")
    shape = [int(d) for d in dims.split("x")]
    if rest.startswith("i64"):
        high = int(rest.split(":")[1]) if rest.count(":") else 100
        return torch.randint(0, high, shape, dtype=torch.int64)
    return torch.randn(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--only", nargs="*", default=None)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    index = {}
    for name, (ctor, inputs, trains, train_mode) in ZOO.items():
        entry = {"file": f"{name}.pt", "input": inputs, "train": trains, "traced_in_train_mode": train_mode}
        index[name] = entry
        if args.only and name not in args.only:
            continue
        torch.manual_seed(0)
        model = ctor()
        model.train(train_mode)
        examples = tuple(make_input(s) for s in inputs)
        with torch.no_grad():
            traced = torch.jit.trace(model, examples, check_trace=False)
        traced.save(os.path.join(args.out, entry["file"]))
        print(f"zoo: wrote {name}.pt", file=sys.stderr)
    # A scripted (not traced) model with control flow, for the importer's error path.
    torch.jit.script(DataDependent()).save(os.path.join(args.out, "control_flow.pt"))
    torch.jit.script(RankChecked()).save(os.path.join(args.out, "rank_checked.pt"))
    torch.manual_seed(0)
    torch.jit.script(ScriptedCNN()).save(os.path.join(args.out, "scripted_cnn.pt"))
    torch.manual_seed(0)
    torch.jit.script(ScriptedGRU()).save(os.path.join(args.out, "scripted_gru.pt"))
    torch.manual_seed(0)
    torch.jit.script(ScriptedPrints()).save(os.path.join(args.out, "scripted_prints.pt"))
    torch.manual_seed(0)
    torch.jit.script(ScriptedLoops()).save(os.path.join(args.out, "scripted_loops.pt"))
    torch.manual_seed(0)
    torch.jit.script(ScriptedNoGrad()).save(os.path.join(args.out, "scripted_no_grad.pt"))
    torch.manual_seed(0)
    torch.jit.script(ScriptedEncoder()).save(os.path.join(args.out, "scripted_encoder.pt"))
    torch.manual_seed(0)
    with torch.no_grad():
        fused = torch.jit.trace(FusedEncoder().eval(), (torch.randn(2, 8, 16),), check_trace=False)
    fused.save(os.path.join(args.out, "fused_encoder.pt"))
    torch.manual_seed(0)
    with torch.no_grad():
        lstm = torch.jit.trace(LastStepLSTM().eval(), (torch.randn(4, 6, 8),), check_trace=False)
    lstm.save(os.path.join(args.out, "lstm.pt"))
    for name, ctor, example in (("lstm_state", FinalStateLSTM, torch.randn(4, 6, 8)),
                                ("scrambled_batch", ScrambledBatch, torch.randn(8, 16)),
                                ("sequence_first", SequenceFirstOutput, torch.randn(4, 6, 8)),
                                ("batch_centered", BatchCentered, torch.randn(8, 16)),
                                ("own_loss", OwnLoss, torch.randn(8, 16)),
                                ("parameter_free", ParameterFree, torch.randn(8, 16)),
                                ("argmax_first", ArgmaxFirst, torch.randn(8, 16)),
                                ("scales_input", ScalesItsInput, torch.randn(8, 16)),
                                ("scales_input_view", ScalesItsInputThroughAView, torch.randn(8, 16)),
                                ("counts_calls", CountsItsCalls, torch.randn(8, 16)),
                                ("clamps_weight", ClampsItsWeight, torch.randn(8, 16)),
                                ("drops_rows", DropsRows, torch.randn(8, 16)),
                                ("shuffled_batch", ShuffledBatch, torch.randn(8, 16)),
                                ("forked_heads", ForkedHeads, torch.randn(8, 32)),
                                ("python_numbers", PythonNumbers, torch.randn(8, 16)),
                                ("fills_buffer", FillsABuffer, torch.randn(8, 16)),
                                ("paired_halves", PairedHalves, torch.randn(8, 16)),
                                ("writes_saved_input", WritesSavedInput, torch.randn(8, 16)),
                                ("embedding_max_norm", EmbeddingMaxNorm, torch.randint(0, 100, (8, 12))),
                                ("tied_ends", TiedEnds, torch.randint(0, 100, (8, 16))),
                                ("pair_input", PairInput, ((torch.randn(8, 16), torch.randn(8, 16)),)),
                                ("shared_matrix", SharedMatrix, (torch.randn(8, 16), torch.randn(16, 16))),
                                ("masked_tokens", MaskedTokens,
                                 (torch.ones(8, 8).tril().bool(), torch.randint(0, 100, (4, 8))))):
        torch.manual_seed(0)
        examples = example if isinstance(example, tuple) else (example,)
        with torch.no_grad():
            torch.jit.trace(ctor().eval(), examples, check_trace=False).save(os.path.join(args.out, f"{name}.pt"))
    torch.manual_seed(0)
    with torch.no_grad():
        torch.jit.trace(BatchFlipped().eval(), (torch.randn(8, 16),), check_trace=False).save(
            os.path.join(args.out, "batch_flipped.pt"))
        torch.jit.trace(DropoutEncoder().train(), (torch.randn(4, 6, 16),), check_trace=False).save(
            os.path.join(args.out, "dropout_encoder.pt"))
        torch.jit.trace(BatchNormMLP().train(), (torch.randn(8, 16),), check_trace=False).save(
            os.path.join(args.out, "batch_norm_mlp.pt"))
        torch.jit.trace(Stochastic().train(), (torch.randn(8, 32),), check_trace=False).save(
            os.path.join(args.out, "stochastic.pt"))
        torch.jit.trace(DropoutMLP().train(), (torch.randn(8, 32),), check_trace=False).save(
            os.path.join(args.out, "dropout_mlp.pt"))
    with torch.no_grad():
        torch.manual_seed(0)
        torch.jit.trace(DictOutput(), (torch.randn(8, 16),), strict=False).save(os.path.join(args.out, "dict_output.pt"))
        torch.jit.trace(NestedDictOutput(), (torch.randn(8, 16),), strict=False).save(
            os.path.join(args.out, "nested_dict_output.pt"))
    # Files that are not what partita reads, for the importer's error lines: a torch.save() state_dict, and a
    # dynamically quantized model (its linear layers' weights are packed quantized:: objects, not tensors).
    torch.manual_seed(0)
    torch.save(MLP().state_dict(), os.path.join(args.out, "state_dict.pt"))
    quantized = torch.ao.quantization.quantize_dynamic(MLP().eval(), {nn.Linear}, dtype=torch.qint8)
    with torch.no_grad():
        torch.jit.trace(quantized, (torch.randn(4, 64),), check_trace=False).save(
            os.path.join(args.out, "quantized_mlp.pt"))
    with open(os.path.join(args.out, "zoo.json"), "w") as f:
        json.dump(index, f, indent=2)


if __name__ == "__main__":
    main()
