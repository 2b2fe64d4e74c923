#!/usr/bin/python3
"""The paper's open choices measured side by side (issue 19, docs/results.md):
how phi's neighbours and clusters change with the draws per sigma, with a
per-channel standardisation (z-scored over the images) before k-means and
k-NN, and with the block whose means are read. Independent of semrep's own
cluster stage: scikit-learn on the phi.nc files that `semrep stage phi`
wrote (tests/bench/open_choices.sh makes them).

    open_choices.py [--pixels IMAGES.idx.gz] PHI.nc [PHI.nc ...]

For every file, sigma and block (phi's middle block, and each block of
block_mean when the file has it), raw and standardised, one line:
  draws, sigma, block, scaling, 1-NN, 10-NN (leave-one-out, majority of the
  10 nearest others, ties to the nearest), NMI at K = 10 (k-means, 10
  restarts) as mean and standard deviation (numpy's, ddof 0) over seeds 0,
  1 and 2, and the
  linear probe's test accuracy (the cluster stage's probe: a stratified 80%
  to train, features standardised on it, multinomial logistic regression
  with L2 lambda 0.01, C = 1 / (lambda n_train)) as mean and standard
  deviation over the splits of seeds 0, 1 and 2.
Channels that are constant over the images (never active) are dropped
before standardising, as their z-score is undefined. With --pixels, the
same measures on the images' pixels (in [0, 1], the rows the first file's
`index` names) as the baseline."""
import gzip
import sys

import netCDF4
import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestNeighbors

SEEDS = (0, 1, 2)
PROBE_LAMBDA = 0.01


def knn_accuracy(x, labels, k):
    """Leave-one-out k-NN accuracy: each image's own row is never a neighbour."""
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    _, idx = nn.kneighbors(x)
    right = 0
    for i, row in enumerate(idx):
        others = [j for j in row if j != i][:k]
        votes = np.bincount(labels[others], minlength=labels.max() + 1)
        best = np.flatnonzero(votes == votes.max())
        # a tie goes to the class of the nearest neighbour among the tied ones
        pick = next(labels[j] for j in others if labels[j] in best)
        right += pick == labels[i]
    return right / len(labels)


def probe_accuracy(x, labels, seed):
    """The cluster stage's linear probe on one seeded, stratified 80/20 split."""
    tr, te = train_test_split(np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=seed)
    mean, sd = x[tr].mean(axis=0), x[tr].std(axis=0)
    sd[sd == 0] = 1
    z = (x - mean) / sd
    fit = LogisticRegression(C=1 / (PROBE_LAMBDA * len(tr)), max_iter=5000).fit(z[tr], labels[tr])
    return fit.score(z[te], labels[te])


def measure(x, labels):
    x = x.astype(np.float64)
    nmi = [normalized_mutual_info_score(labels, KMeans(n_clusters=10, n_init=10, random_state=s).fit(x).labels_)
           for s in SEEDS]
    probe = [probe_accuracy(x, labels, s) for s in SEEDS]
    return (knn_accuracy(x, labels, 1), knn_accuracy(x, labels, 10), np.mean(nmi), np.std(nmi),
            np.mean(probe), np.std(probe))


def scalings(x):
    yield "as is", x
    keep = x.std(axis=0) > 0
    z = x[:, keep]
    yield "z-scored", (z - z.mean(axis=0)) / z.std(axis=0)


def idx_images(path):
    """The images of an IDX file (gzip), as rows of floats in [0, 1]."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * d:8 + 4 * d], "big") for d in range(dims)]
    pixels = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    return pixels.reshape(shape[0], -1).astype(np.float64) / 255.0


def report(draws, sigma, block, values, labels):
    for scaling, x in scalings(values):
        one, ten, nmi, nmi_sd, probe, probe_sd = measure(x, labels)
        print(f"{draws}\t{sigma}\t{block}\t{scaling}\t{one:.3f}\t{ten:.3f}\t{nmi:.3f}\t{nmi_sd:.3f}\t"
              f"{probe:.3f}\t{probe_sd:.3f}", flush=True)


def main():
    args = sys.argv[1:]
    pixels = None
    if args[:1] == ["--pixels"]:
        pixels, args = args[1], args[2:]
    print("draws\tsigma_of_255\tblock\tscaling\t1-NN\t10-NN\tNMI_K10\tNMI_sd\tprobe\tprobe_sd")
    if pixels:
        with netCDF4.Dataset(args[0]) as f:
            labels = np.asarray(f["label"][:], dtype=np.int64)
            index = np.asarray(f["index"][:], dtype=np.int64)
        report("-", "-", "pixels", idx_images(pixels)[index], labels)
    for path in args:
        with netCDF4.Dataset(path) as f:
            labels = np.asarray(f["label"][:], dtype=np.int64)
            sigmas = np.asarray(f["sigma"][:])
            draws = np.asarray(f["draws"][:])
            blocks = {"mid": np.asarray(f["phi"][:], dtype=np.float64)}
            if "block_mean" in f.variables:
                var = f["block_mean"]
                start = list(var.block_start)
                names = var.blocks.split(",")
                means = np.asarray(var[:], dtype=np.float64)
                for b, name in enumerate(names):
                    if name != "mid":
                        blocks[name] = means[:, :, start[b]:start[b + 1]]
        for s, sigma in enumerate(sigmas):
            for name, values in blocks.items():
                report(draws[s], f"{sigma * 255:.0f}", name, values[s], labels)


if __name__ == "__main__":
    main()
