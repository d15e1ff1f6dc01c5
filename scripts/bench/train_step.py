#!/usr/bin/env python3
"""PyTorch peer of `stages/examples/train_step.rs`: the SN paper's standard CNN (Table 3),
batch 64, 32x32x3, hinge loss, Adam (2e-4, 0, 0.9), SN via torch.nn.utils.spectral_norm.
G_CH, D_CH (default 64 each) and BATCH (default 64) in the environment pick other sizes, as
for the Rust side; THREADS (default 2) the threads. Prints one JSON object per measurement (median of ROUNDS steps after 3
warm-up steps)."""
import json
import os
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(int(os.environ.get("THREADS", 2)))
torch.manual_seed(0)
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
gch, dch = int(os.environ.get("G_CH", 64)), int(os.environ.get("D_CH", 64))
B = int(os.environ.get("BATCH", 64))
SN = nn.utils.spectral_norm


def lrelu():
    return nn.LeakyReLU(0.1)


G = nn.Sequential(
    nn.Linear(128, 4 * 4 * 8 * gch), nn.Unflatten(1, (8 * gch, 4, 4)), nn.BatchNorm2d(8 * gch), nn.ReLU(),
    nn.ConvTranspose2d(8 * gch, 4 * gch, 4, 2, 1), nn.BatchNorm2d(4 * gch), nn.ReLU(),
    nn.ConvTranspose2d(4 * gch, 2 * gch, 4, 2, 1), nn.BatchNorm2d(2 * gch), nn.ReLU(),
    nn.ConvTranspose2d(2 * gch, gch, 4, 2, 1), nn.BatchNorm2d(gch), nn.ReLU(),
    nn.Conv2d(gch, 3, 3, 1, 1), nn.Tanh(),
)
D = nn.Sequential(
    SN(nn.Conv2d(3, dch, 3, 1, 1)), lrelu(), SN(nn.Conv2d(dch, dch, 4, 2, 1)), lrelu(),
    SN(nn.Conv2d(dch, 2 * dch, 3, 1, 1)), lrelu(), SN(nn.Conv2d(2 * dch, 2 * dch, 4, 2, 1)), lrelu(),
    SN(nn.Conv2d(2 * dch, 4 * dch, 3, 1, 1)), lrelu(), SN(nn.Conv2d(4 * dch, 4 * dch, 4, 2, 1)), lrelu(),
    SN(nn.Conv2d(4 * dch, 8 * dch, 3, 1, 1)), lrelu(), nn.Flatten(), SN(nn.Linear(4 * 4 * 8 * dch, 1)),
)
opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.9))
opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.0, 0.9))
real = torch.rand(256, 3, 32, 32) * 2 - 1


def d_step():
    x = real[torch.randint(0, 256, (B,))]
    with torch.no_grad():
        fake = G(torch.randn(B, 128))
    loss = torch.relu(1 - D(x)).mean() + torch.relu(1 + D(fake)).mean()
    opt_d.zero_grad()
    loss.backward()
    opt_d.step()


def g_step():
    # D's parameters get no gradient in G's step, as in ours (Mode::Frozen): the same work.
    D.requires_grad_(False)
    loss = -D(G(torch.randn(B, 128))).mean()
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()
    D.requires_grad_(True)


def timed(f):
    for _ in range(3):
        f()
    ts = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def g_step_d_grads():
    # The common idiom: D's parameter gradients computed in G's step too, then discarded.
    loss = -D(G(torch.randn(B, 128))).mean()
    opt_g.zero_grad()
    loss.backward()
    opt_g.step()


for what, f in (("d_step", d_step), ("g_step", g_step), ("g_step_d_grads", g_step_d_grads)):
    print(json.dumps({"impl": "torch", "what": what, "seconds": timed(f)}))
