#!/usr/bin/python3
"""PyTorch's time for the passes `semrep bench` measures, on the same machine,
for the ratio in docs/performance.md. The network is the fixture script's
torch.nn UNet (tests/fixtures/make_unet_fixture.py), SPEC.md's default shape.

    /usr/bin/python3 tests/bench/torch_unet.py [--batch 64] [--threads N] [--seconds 2]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from make_unet_fixture import BlindUNet  # noqa: E402


def encoder_mid(model, y):
    h = y
    for b in range(model.n):
        h = F.avg_pool2d(model.encoder[b](h), 2, 2)
    return model.mid(h).mean(dim=(2, 3))


def rate(fn, batch, seconds):
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return batch * calls / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(a.threads)
    model = BlindUNet(1, [32, 64, 128, 256], [2, 2, 2], 3, [2, 2, 2], "layer", "clean",
                      [False] * 3).float()
    y = torch.rand(a.batch, 1, 32, 32)
    x = torch.rand(a.batch, 1, 32, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train():
        opt.zero_grad(set_to_none=False)
        loss = ((model(y) - x) ** 2).sum() / a.batch
        loss.backward()
        opt.step()

    def projection():
        yy = y.clone().requires_grad_(True)
        (encoder_mid(model, yy) ** 2).sum().backward()

    with torch.no_grad():
        r_mid = rate(lambda: encoder_mid(model, y), a.batch, a.seconds)
        r_full = rate(lambda: model(y), a.batch, a.seconds)
    r_train = rate(train, a.batch, a.seconds)
    r_proj = rate(projection, a.batch, a.seconds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}")
    for name, r in [("encoder+mid forward (phi)", r_mid), ("full forward D(y)", r_full),
                    ("training step (fwd+bwd+Adam)", r_train),
                    ("projection step (input grad)", r_proj)]:
        print(f"  {name:<30} {r:12.1f} images/s")


if __name__ == "__main__":
    main()
