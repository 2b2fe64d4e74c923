#!/usr/bin/env python3
"""denoise-eval's denoise.nc recomputed with PyTorch and a numpy Philox
(tests/stages/test_denoise_eval.sh).

    denoise_reference.py DENOISE.nc MODEL.nc IMAGES SEED

The model (a semrep checkpoint, converted back by
pipeline/io/convert_checkpoint.py to-pt and loaded into
tests/fixtures/make_unet_fixture.py's BlindUNet) denoises, in float64, the
first IMAGES Fashion-MNIST test images (pixels / 255, padded to 32x32),
with the noise regenerated from docs/formats.md by tests/fixtures/philox.py
(stream: seed, denoise-eval's domain, the image's index, then 0 and the
sigma's float bits for the PSNR table; 1 for the held-out sigma's uniform,
drawn inv_sqrt on [0, 1], and 2 for its noise). Checks the input and output
PSNR (mean over images of 10 log10(1 / MSE)) within 0.01 dB, the output's
sd within 0.01 dB, and the held-out loss within 1e-4 relative. Prints
"ok"/"FAIL" lines; exit 0 only when all hold.
"""

import gzip
import os
import subprocess
import sys
import tempfile

import netCDF4
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import make_unet_fixture as muf  # noqa: E402
import philox  # noqa: E402


def load_model(path):
    with netCDF4.Dataset(path) as ds:
        a = {k: ds.getncattr(k) for k in ds.ncattrs()}
    cfg = dict(in_ch=int(a["in_channels"]), kernels=[int(k) for k in np.atleast_1d(a["kernels"])],
               enc_convs=[int(k) for k in np.atleast_1d(a["enc_convs"])], mid_convs=int(a["mid_convs"]),
               dec_convs=[int(k) for k in np.atleast_1d(a["dec_convs"])], norm=str(a["norm"]),
               output=str(a["output"]))
    cfg["up_bias"] = [bool(b) for b in np.atleast_1d(a.get("upsample_bias", [0] * len(cfg["enc_convs"])))]
    with tempfile.TemporaryDirectory() as tmp:
        pt = os.path.join(tmp, "m.pt")
        subprocess.run([sys.executable, os.path.join(ROOT, "pipeline", "io", "convert_checkpoint.py"), "to-pt", path,
                        pt], check=True, stdout=subprocess.DEVNULL)
        sd = torch.load(pt)
    model = muf.BlindUNet(**cfg)
    model.load_state_dict(sd)
    return model.double().eval()


def main():
    out, model_path, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    model = load_model(model_path)
    raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
    x = np.zeros((n, 1, 32, 32), np.float32)
    x[:, 0, 2:30, 2:30] = np.frombuffer(raw, np.uint8, offset=16)[:n * 784].reshape(n, 28, 28) / np.float32(255)
    dom, pixels = philox.DOMAIN["eval_noise"], 32 * 32

    def denoise(y):
        with torch.no_grad():
            return model(torch.from_numpy(y)).numpy()

    def psnr(a):
        return 10 * np.log10(1.0 / ((a.astype(np.float64) - x) ** 2).reshape(n, -1).mean(1))

    ds = netCDF4.Dataset(out)
    sigmas = np.array(ds["sigma"][:])
    got = {v: np.array(ds[v][:]) for v in ("input_psnr", "output_psnr", "output_psnr_sd")}
    failed = 0
    for s, sigma in enumerate(sigmas):
        sigma32 = np.float32(sigma)
        z = np.stack([philox.gaussian(seed, dom, i, 0, philox.float_bits(sigma32), pixels) for i in range(n)])
        y = (x + sigma32 * z.reshape(n, 1, 32, 32).astype(np.float32)).astype(np.float32)
        pin, pout = psnr(y), psnr(denoise(y.astype(np.float64)))
        want = (pin.mean(), pout.mean(), pout.std())
        for v, w in zip(("input_psnr", "output_psnr", "output_psnr_sd"), want):
            ok = abs(got[v][s] - w) < 0.01
            failed += not ok
            print("%s sigma %5.1f/255 %-15s %.4f, PyTorch with numpy's noise %.4f"
                  % ("ok  " if ok else "FAIL", sigma * 255, v, got[v][s], w))
    # the held-out loss: each image at a training sigma (inv_sqrt on [0, 1])
    y = np.empty_like(x)
    for i in range(n):
        u = philox.uniform(seed, dom, i, 1, 0, 1)[0]
        sigma = np.float32(u * u)
        y[i] = x[i] + sigma * philox.gaussian(seed, dom, i, 2, 0, pixels).reshape(1, 32, 32).astype(np.float32)
    loss = ((denoise(y.astype(np.float64)) - x) ** 2).reshape(n, -1).sum(1).mean()
    stored = float(ds.heldout_loss)
    ok = abs(stored - loss) <= 1e-4 * loss
    failed += not ok
    print("%s held-out loss %.6f, PyTorch with numpy's noise %.6f" % ("ok  " if ok else "FAIL", stored, loss))
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
