#!/usr/bin/python3
"""Checks `semrep bench`'s table (its output in OUT) for the default model:
every rate positive and finite, and each pass's GFLOP/s over its images/s,
the FLOPs per image semrep counts, against a count made here on the
PyTorch UNet of tests/fixtures/make_unet_fixture.py (forward hooks on every
convolution: 2 Cin Cout k^2 per output pixel, a transposed 2x2 convolution
2 Cin Cout 4 per input pixel). docs/cli.md's conventions: a training step
is a forward and a backward of two forwards, a projection step a forward to
the middle block and its input half (one forward). Prints one line per
finding; exits 1 on any failure.

    bench_check.py OUT RANKS
"""
import math
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from make_unet_fixture import BlindUNet  # noqa: E402

out, ranks = open(sys.argv[1]).read(), int(sys.argv[2])
bad = []


def number(text):
    try:
        v = float(text)
    except ValueError:
        return float("nan")
    return v


# the FLOPs of one image, counted on PyTorch's modules as they run
model = BlindUNet(1, [32, 64, 128, 256], [2, 2, 2], 3, [2, 2, 2], "layer", "clean", [False] * 3).float()
count = [0.0]


def hook(module, inputs, output):
    cin, cout = module.in_channels, module.out_channels
    kh, kw = module.kernel_size
    if isinstance(module, torch.nn.ConvTranspose2d):
        count[0] += 2.0 * cin * cout * kh * kw * inputs[0].shape[2] * inputs[0].shape[3]
    else:
        count[0] += 2.0 * cin * cout * kh * kw * output.shape[2] * output.shape[3]


for m in model.modules():
    if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
        m.register_forward_hook(hook)
y = torch.zeros(1, 1, 32, 32)
with torch.no_grad():
    h = y
    for b in range(model.n):
        h = F.avg_pool2d(model.encoder[b](h), 2, 2)
    model.mid(h)
    mid = count[0]
    count[0] = 0.0
    model(y)
    full = count[0]
want = {"encoder+mid forward (phi)": mid, "full forward D(y)": full,
        "training step (fwd+bwd+Adam)": 3 * full, "projection step (input grad)": 2 * mid}

m = re.search(r"sgemm 2048\^3: (\S+) GFLOP/s per rank \(slowest rank (\S+)\)", out)
sgemm = number(m.group(1)) if m else float("nan")
if not (m and math.isfinite(sgemm) and sgemm > 0 and 0 < number(m.group(2)) <= sgemm + 0.05):
    bad.append(f"the sgemm line: {m.group(0) if m else 'missing'}")
if not re.search(rf"^  {ranks} rank\(s\)", out, re.M):
    bad.append(f"no '{ranks} rank(s)' line")
rows = {}
for line in out.splitlines():
    for name in want:
        if line.startswith("  " + name):
            rows[name] = [number(t.rstrip("%/s")) for t in line[len(name) + 2:].split()]
for name, flops in want.items():
    cells = rows.get(name)
    if not cells or len(cells) != 4:
        bad.append(f"{name}: no row of 4 numbers")
        continue
    rate, gflops, share, slowest = cells
    if not all(math.isfinite(v) and v > 0 for v in (rate, gflops, share, slowest)):
        bad.append(f"{name}: a rate that is not positive and finite: {cells}")
        continue
    # each printed to 0.1 (the share to 1%): the ratio's rounding
    per_image = gflops * 1e9 / rate
    tol = 0.05 / gflops + 0.05 / rate + 1e-3
    if abs(per_image / flops - 1) > tol:
        bad.append(f"{name}: {per_image / 1e9:.4f} GFLOP per image, PyTorch's count is {flops / 1e9:.4f}")
    # the share of every rank's sgemm together (the line shows one rank's)
    whole = 100 * gflops / (sgemm * ranks)
    if abs(share - whole) > 0.5 + whole * (0.05 / gflops + 0.05 / sgemm):
        bad.append(f"{name}: {share}% of sgemm, but {gflops} / ({ranks} x {sgemm}) GFLOP/s")
    if slowest > rate / ranks + 0.05 * (1 + 1 / ranks):
        bad.append(f"{name}: the slowest rank's {slowest}/s is above the mean {rate / ranks:.1f}/s")
for b in bad:
    print("bench: " + b)
print(f"bench: {len(rows)} passes, FLOPs per image as PyTorch counts them ({mid / 1e9:.4f} and {full / 1e9:.4f} "
      f"GFLOP for the encoder+mid and full forwards)" if not bad else f"bench: {len(bad)} finding(s)")
sys.exit(1 if bad else 0)
