#!/usr/bin/env python3
"""A synthetic phi.nc for the analysis benchmark (tests/bench/analysis_scale.sh).

    make_synthetic_phi.py OUT.nc IMAGES [CHANNELS [SIGMA [SEED]]]

writes a phi file in the layout of docs/formats.md ("phi", version 1) with
one sigma (default 0.2), IMAGES images of CHANNELS (default 256) channels:
a labelled mixture of sparse non-negative clusters, like ReLU features.
10 classes of 10 components each; a component is a prototype with 12 to 24
active channels (log-normal magnitudes) besides 2 channels active in every
image; an image is relu(gain * prototype + noise - 0.05), gain log-normal,
noise N(0, 0.05) on every channel, so about 84% of the inactive channels
are exactly 0 and the others small.

Rows are made and written 65,536 at a time (a chunk is 64 MB of float32 at
256 channels), so a million images need about 200 MB of memory; the file is
IMAGES x CHANNELS x 4 bytes (1 GB for a million). The rows of chunk c come
from numpy's default_rng((SEED, c)): the same arguments give the same file.
"""

import hashlib
import sys

import netCDF4
import numpy as np

CLASSES, COMPONENTS, COMMON = 10, 10, 2
ROWS = 65536


def put_text(obj, name, value):
    obj.setncattr(name, value.encode("utf-8"))  # NC_CHAR, as semrep writes


def prototypes(channels, seed):
    rng = np.random.default_rng((seed, 1 << 20))
    proto = np.zeros((CLASSES * COMPONENTS, channels), dtype=np.float32)
    for k in range(CLASSES * COMPONENTS):
        active = rng.choice(np.arange(COMMON, channels), size=rng.integers(12, 25), replace=False)
        proto[k, active] = rng.lognormal(0.0, 0.5, size=len(active))
        proto[k, :COMMON] = 1.0
    return proto


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: make_synthetic_phi.py OUT.nc IMAGES [CHANNELS [SIGMA [SEED]]]")
    path, n = sys.argv[1], int(sys.argv[2])
    channels = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    sigma = float(sys.argv[4]) if len(sys.argv) > 4 else 0.2
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    if n < 2 or channels < COMMON + 24:
        sys.exit("make_synthetic_phi.py: need at least 2 images and %d channels" % (COMMON + 24))
    proto = prototypes(channels, seed)
    ds = netCDF4.Dataset(path, "w", format="NETCDF4")
    try:
        ds.createDimension("sigma", 1)
        ds.createDimension("image", n)
        ds.createDimension("channel", channels)
        put_text(ds, "format", "semrep-phi")
        ds.setncattr("format_version", np.int32(1))
        put_text(ds, "fingerprint", hashlib.sha1(repr((n, channels, sigma, seed)).encode()).hexdigest()[:16])
        put_text(ds, "checkpoint_checksum", "0000000000000000")
        put_text(ds, "dataset", "synthetic: %d images, %d channels, seed %d" % (n, channels, seed))
        ds.setncattr("seed", np.int64(seed))
        put_text(ds, "conf", "(tests/bench/make_synthetic_phi.py)")
        v = ds.createVariable("sigma", "f8", ("sigma",))
        v[:] = np.array([sigma])
        v = ds.createVariable("draws", "i4", ("sigma",))
        v[:] = np.array([1], dtype=np.int32)
        index = ds.createVariable("index", "i8", ("image",))
        label = ds.createVariable("label", "i4", ("image",))
        put_text(label, "class_names", "\n".join("class%d" % k for k in range(CLASSES)))
        phi = ds.createVariable("phi", "f4", ("sigma", "image", "channel"),
                                chunksizes=(1, min(n, 4096), channels))
        put_text(phi, "meaning", "synthetic: a labelled mixture of sparse non-negative clusters")
        for c, r0 in enumerate(range(0, n, ROWS)):
            m = min(ROWS, n - r0)
            rng = np.random.default_rng((seed, c))
            comp = rng.integers(0, CLASSES * COMPONENTS, size=m)
            gain = rng.lognormal(0.0, 0.3, size=(m, 1)).astype(np.float32)
            x = gain * proto[comp] + rng.normal(-0.05, 0.05, size=(m, channels)).astype(np.float32)
            np.maximum(x, 0.0, out=x)
            phi[0, r0:r0 + m, :] = x
            label[r0:r0 + m] = (comp // COMPONENTS).astype(np.int32)
            index[r0:r0 + m] = np.arange(r0, r0 + m, dtype=np.int64)
    finally:
        ds.close()


if __name__ == "__main__":
    main()
