#!/usr/bin/python3
"""PyTorch's time for the passes `semrep bench` measures, on the same machine,
for the ratio in docs/performance.md. The network is the fixture script's
torch.nn UNet (tests/fixtures/make_unet_fixture.py): SPEC.md's default shape
(1x32x32) or the paper's (3x64x64, kernels 64..512); on the CPU or a GPU, in
FP32 or under BF16 autocast (tests/gpu/check.sh).

    python3 tests/bench/torch_unet.py [--batch 64] [--threads N] [--seconds 2]
                                      [--shape default|paper] [--device cpu|cuda] [--bf16]
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


def rate(fn, batch, seconds, sync):
    fn()
    sync()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        sync()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 3:
            return batch * calls / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--shape", choices=["default", "paper"], default="default")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--bf16", action="store_true", help="BF16 autocast (FP32 weights and sums)")
    a = ap.parse_args()
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(a.threads)
    if a.shape == "paper":
        ch, size, model = 3, 64, BlindUNet(3, [64, 128, 256, 512], [2, 2, 2], 3, [5, 6, 7], "layer", "clean",
                                           [False] * 3)
    else:
        ch, size, model = 1, 32, BlindUNet(1, [32, 64, 128, 256], [2, 2, 2], 3, [2, 2, 2], "layer", "clean",
                                           [False] * 3)
    dev = torch.device(a.device)
    model = model.float().to(dev)
    y = torch.rand(a.batch, ch, size, size, device=dev)
    x = torch.rand(a.batch, ch, size, size, device=dev)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    if a.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    autocast = torch.autocast(a.device, dtype=torch.bfloat16, enabled=a.bf16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train():
        opt.zero_grad(set_to_none=False)
        with autocast:
            loss = ((model(y) - x) ** 2).sum() / a.batch
        loss.backward()
        opt.step()

    def projection():
        yy = y.clone().requires_grad_(True)
        with autocast:
            out = (encoder_mid(model, yy) ** 2).sum()
        out.backward()

    with torch.no_grad(), autocast:
        r_mid = rate(lambda: encoder_mid(model, y), a.batch, a.seconds, sync)
        r_full = rate(lambda: model(y), a.batch, a.seconds, sync)
    r_train = rate(train, a.batch, a.seconds, sync)
    r_proj = rate(projection, a.batch, a.seconds, sync)
    where = torch.cuda.get_device_name() if a.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, {a.shape} shape {ch}x{size}x{size}, batch {a.batch}, "
          f"{'bf16 autocast' if a.bf16 else 'fp32'}")
    for name, r in [("encoder+mid forward (phi)", r_mid), ("full forward D(y)", r_full),
                    ("training step (fwd+bwd+Adam)", r_train),
                    ("projection step (input grad)", r_proj)]:
        print(f"  {name:<30} {r:12.1f} images/s")


if __name__ == "__main__":
    main()
