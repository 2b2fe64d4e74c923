#!/usr/bin/env python3
"""phi.nc recomputed with PyTorch and a numpy Philox
(tests/stages/test_phi_reference.sh).

    phi_reference.py PHI.nc MODEL.nc SEED

For the images of PHI.nc (Fashion-MNIST test images, by their `index`,
pixels / 255 padded to 32x32), from docs/formats.md alone:
  - image_key is XXH3-64 of the image's float32 pixels (NCHW) seeded with
    its noise key (the index, for IDX files): exact;
  - phi at sigma s is the mean over `draws` of the middle block's channel
    means of the model (make_unet_fixture.BlindUNet, float64, the
    checkpoint converted by convert_checkpoint.py to-pt) at x + s z, z draw
    k of Philox stream (seed, PHI_NOISE, noise key, k, bits of s): within
    2e-5 of the largest |phi| of that sigma;
  - block_mean (when there): every block's channel means the same way, in
    the order of the attribute `blocks` on block_mean.
Prints "ok"/"FAIL" lines; exit 0 only when all hold.
"""

import gzip
import os
import sys

import netCDF4
import numpy as np
import torch
import xxhash

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
import philox  # noqa: E402
from denoise_reference import load_model  # noqa: E402

TOL = 2e-5


def test_images(index):
    """The IDX reader's pixels of the Fashion-MNIST test images at these
    indices: (n, 1, 32, 32) float32, padded to 32x32."""
    raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
    x28 = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[np.asarray(index, np.int64)]
    x = np.zeros((len(x28), 1, 32, 32), np.float32)
    # the IDX reader's pixels: byte * (1/255 in float32), which for 126 of
    # the 256 byte values is 1 ulp from byte / 255; the key hashes the bits
    x[:, 0, 2:30, 2:30] = x28.astype(np.float32) * np.float32(1.0 / 255.0)
    return x


def phi_means(model, x, keys, seed, sigma, draws):
    """Every block's channel means of the images x ((n, C, H, W) float32),
    in the model's order, each the mean over `draws` draws (one at sigma 0)
    at x + s z, z draw k of Philox stream (seed, PHI_NOISE, key, k, bits of
    s) for s = sigma in float32, in float64 (docs/formats.md)."""
    n, sigma32 = len(x), np.float32(sigma)
    pixels = int(np.prod(x.shape[1:]))
    dom = philox.DOMAIN["phi_noise"]
    sums = None
    for k in range(1 if sigma32 == 0 else int(draws)):
        if sigma32 == 0:
            y = x.astype(np.float64)
        else:
            z = np.stack([philox.gaussian(seed, dom, int(keys[i]), k, philox.float_bits(sigma32), pixels)
                          for i in range(n)])
            y = (x + sigma32 * z.reshape(x.shape).astype(np.float32)).astype(np.float64)
        with torch.no_grad():
            _, means = model(torch.from_numpy(y), return_means=True)
        means = [m.numpy() for m in means]
        sums = means if sums is None else [a + b for a, b in zip(sums, means)]
    return [m / (1 if sigma32 == 0 else int(draws)) for m in sums]


def main():
    phi_path, model_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = load_model(model_path)
    ds = netCDF4.Dataset(phi_path)
    index = np.array(ds["index"][:]).astype(np.int64)
    n = len(index)
    x = test_images(index)
    failed = 0

    keys = np.array(ds["image_key"][:]).astype(np.uint64)
    want = np.array([xxhash.xxh3_64_intdigest(x[i].tobytes(), seed=int(index[i])) for i in range(n)], np.uint64)
    ok = np.array_equal(keys, want)
    failed += not ok
    print("%s image_key: XXH3-64 of the pixels seeded with the index (%d of %d equal)"
          % ("ok  " if ok else "FAIL", int((keys == want).sum()), n))

    sigmas = np.array(ds["sigma"][:])
    draws = np.array(ds["draws"][:])
    phi = np.array(ds["phi"][:]).astype(np.float64)
    blocks = None
    if "block_mean" in ds.variables:
        bm = np.array(ds["block_mean"][:]).astype(np.float64)
    for s, sigma in enumerate(sigmas):
        means = phi_means(model, x, index, seed, sigma, draws[s])
        mid = means[model.n]
        err = np.abs(phi[s] - mid).max() / np.abs(mid).max()
        ok = err <= TOL
        failed += not ok
        print("%s phi at sigma %.3f (%d draws): worst %.2e of the largest, PyTorch with numpy's noise"
              % ("ok  " if ok else "FAIL", sigma, draws[s], err))
        if "block_mean" in ds.variables:
            # the model's means come encoder blocks, mid, then decoder blocks
            # from the deepest; blocks are named in block_mean's attribute
            names = ds["block_mean"].getncattr("blocks").split(",") if "blocks" in ds["block_mean"].ncattrs() else []
            by_name = {"encoder.%d" % b: means[b] for b in range(model.n)}
            by_name["mid"] = mid
            for j, b in enumerate(range(model.n - 1, 0, -1)):
                by_name["decoder.%d" % b] = means[model.n + 1 + j]
            ref = np.concatenate([by_name[nm.strip()] for nm in names], axis=1) if names else None
            ok = ref is not None and ref.shape == bm[s].shape and np.abs(bm[s] - ref).max() <= TOL * np.abs(ref).max()
            failed += not ok
            print("%s block means at sigma %.3f (%s)" % ("ok  " if ok else "FAIL", sigma, ",".join(names)))
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
