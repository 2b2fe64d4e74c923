#!/usr/bin/env python3
"""The cluster stage's clusters.nc against numpy and scikit-learn
(tests/stages/test_cluster_reference.sh).

    cluster_reference.py OUTPUT_DIR IDX_IMAGES.gz

reads OUTPUT_DIR/phi.nc (the rows clustered) and OUTPUT_DIR/clusters.nc, and
the raw pixels of phi.nc's images from the IDX file (the pixel baseline),
and checks, for each phi sigma and for the pixels:

  neighbours   every query's list is numpy's leave-one-out nearest images
               (float64 distances): the image itself never in it, the
               distances numpy's within 1e-4 relative, nearest first, and
               each index at its rank unless numpy's distances there tie
               within 1e-4;
  k-NN         the stored accuracy for k = 1 and 10 is the majority vote of
               numpy's lists (a tie to the nearer label), exactly (or of
               the stored lists, where they are numpy's up to tied
               distances);
  NMI, ARI,    recomputed by scikit-learn (NMI arithmetic) and numpy
  purity       (purity) from the stored assignment and phi.nc's labels,
               within 1e-9;
  sizes        cluster_size counts the stored assignment; 0 beyond K;
  Lloyd        the stored assignment is a fixed point of Lloyd's
               iteration: each image is nearest (within 1e-5 relative) the
               mean of its own cluster, and the stored inertia is the sum
               of squared distances to those means (within 1e-5 relative);
  inertia      at most 1.01 times the best of scikit-learn's KMeans
               (k-means++, n_init 10, its own seed);
  members      the members of each cluster are in it, nearest its mean
               first, and no image of the cluster left out is nearer its
               mean than the last member kept (1e-5 relative).

Prints one line per check ("ok ..." or "FAIL ..."), then "N passed, M
failed"; exit 0 only when none failed.
"""

import gzip
import sys

import netCDF4
import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print("ok   " + what)
    else:
        failed += 1
        print("FAIL " + what)


def purity(assign, labels):
    total = 0
    for c in np.unique(assign):
        total += np.bincount(labels[assign == c]).max()
    return total / len(labels)


def vote_right(order, labels, k):
    right = 0
    for i, row in enumerate(order):
        row = row[:k]
        votes = np.bincount(labels[row], minlength=labels.max() + 1)
        best = next(labels[j] for j in row if votes[labels[j]] == votes.max())
        right += best == labels[i]
    return right / len(order)


def check_space(name, x, labels, ks, inertia, nmi, pur, ari, assign, sizes, members, query, nbr, dist, knn, knn_k):
    n = len(x)
    d2 = np.maximum((x * x).sum(1)[:, None] - 2 * x @ x.T + (x * x).sum(1)[None, :], 0.0)
    d = np.sqrt(d2)
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    nn = nbr.shape[1]

    # neighbours of the stored queries
    q = query
    self_in = int((nbr == q[:, None]).any(axis=1).sum())
    true_sorted = np.take_along_axis(d[q], order[q, :nn], axis=1)
    dist_err = np.abs(dist - true_sorted).max() / true_sorted.max()
    at_rank = np.take_along_axis(d[q], nbr.astype(np.int64), axis=1)
    rank_err = np.abs(at_rank - true_sorted) / true_sorted
    index_ok = (nbr == order[q, :nn]) | (rank_err <= 1e-4)
    check(self_in == 0, "%s: no image is its own neighbour (%d lists hold their query)" % (name, self_in))
    check(dist_err < 1e-4, "%s: neighbour distances are numpy's (worst %.2g of the largest)" % (name, dist_err))
    check(bool(index_ok.all()),
          "%s: neighbour lists are numpy's, nearest first (%d entries differ)" % (name, int((~index_ok).sum())))
    # numpy's vote; where float32 swapped two neighbours at a tie (allowed
    # above) the vote over the stored lists, once they are numpy's
    for j, k in enumerate(knn_k):
        want = vote_right(order[q], labels, int(k))
        alt = vote_right(nbr.astype(np.int64), labels, int(k)) if index_ok.all() else want
        check(abs(knn[j] - want) < 1e-12 or abs(knn[j] - alt) < 1e-12,
              "%s: %d-NN accuracy %.6f, numpy's vote %.6f" % (name, k, knn[j], want))

    for t, K in enumerate(ks):
        K = int(K)
        a = assign[t].astype(np.int64)
        tag = "%s K=%d" % (name, K)
        check(a.min() >= 0 and a.max() < K, "%s: every image in a cluster 0..K-1" % tag)
        counts = np.bincount(a, minlength=sizes.shape[1])
        check(np.array_equal(counts, sizes[t]), "%s: cluster_size counts the assignment" % tag)
        want = (normalized_mutual_info_score(labels, a), purity(a, labels), adjusted_rand_score(labels, a))
        for what, got, ref in zip(("NMI", "purity", "ARI"), (nmi[t], pur[t], ari[t]), want):
            check(abs(got - ref) < 1e-9, "%s: stored %s %.9f, scikit-learn's from the stored labels %.9f" % (tag, what, got, ref))
        # Lloyd's fixed point
        used = np.flatnonzero(counts[:K])
        means = np.zeros((K, x.shape[1]))
        np.add.at(means, a, x)
        means[used] /= counts[used][:, None]
        dc = ((x[:, None, :] - means[None, used, :]) ** 2).sum(-1)
        own = ((x - means[a]) ** 2).sum(1)
        worst = (own - dc.min(1)).max() / max(dc.min(1).mean(), 1e-30)
        check(len(used) == K, "%s: no cluster is empty (%d of %d used)" % (tag, len(used), K))
        check(worst <= 1e-5, "%s: each image nearest its own cluster's mean (worst excess %.2g of the mean distance)"
              % (tag, worst))
        check(abs(inertia[t] - own.sum()) <= 1e-5 * own.sum(),
              "%s: inertia %.8g is the squared distances to the means %.8g" % (tag, inertia[t], own.sum()))
        ref = KMeans(n_clusters=K, n_init=10, random_state=0).fit(x).inertia_
        check(inertia[t] <= 1.01 * ref, "%s: inertia %.6g within 1.01x scikit-learn's best %.6g (ratio %.4f)"
              % (tag, inertia[t], ref, inertia[t] / ref))
        # members: nearest the mean first, none nearer left out
        m_ok = True
        for c in used:
            row = members[t, c]
            kept = row[row >= 0].astype(np.int64)
            inside = np.flatnonzero(a == c)
            dm = ((x[inside] - means[c]) ** 2).sum(1)
            if len(kept) != min(len(inside), members.shape[2]) or not (a[kept] == c).all():
                m_ok = False
                continue
            dk = ((x[kept] - means[c]) ** 2).sum(1)
            tol = 1e-5 * dm.max() + 1e-12
            if (np.diff(dk) < -tol).any():
                m_ok = False
            left = np.setdiff1d(inside, kept)
            if len(left) and ((x[left] - means[c]) ** 2).sum(1).min() < dk.max() - tol:
                m_ok = False
        check(m_ok, "%s: members lie in their cluster, nearest its mean first, none nearer left out" % tag)


def main():
    out, images = sys.argv[1], sys.argv[2]
    phi = netCDF4.Dataset(out + "/phi.nc")
    cl = netCDF4.Dataset(out + "/clusters.nc")
    labels = np.array(phi["label"][:]).astype(np.int64)
    rows = np.array(phi["phi"][:]).astype(np.float64)
    psig = np.array(phi["sigma"][:])
    csig = np.array(cl["sigma"][:])
    ks = np.array(cl["k"][:])
    knn_k = np.array(cl["knn"][:])
    query = np.array(cl["query_index"][:]).astype(np.int64)
    check(len(query) == len(labels) and (query == np.arange(len(labels))).all(), "exact search: every image a query")

    def v(name):
        return np.array(cl[name][:])

    for s, sig in enumerate(csig):
        p = int(np.argmin(np.abs(psig - sig)))
        check_space("phi sigma %g" % sig, rows[p], labels, ks, v("inertia")[s], v("nmi")[s], v("purity")[s],
                    v("ari")[s], v("assignment")[s], v("cluster_size")[s], v("members")[s], query,
                    v("neighbours")[s], v("neighbour_distance")[s], v("knn_accuracy")[s], knn_k)
    if "pixel_assignment" in cl.variables:
        index = np.array(phi["index"][:]).astype(np.int64)
        raw = gzip.open(images).read()
        side = int.from_bytes(raw[8:12], "big")
        x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, side * side)[index].astype(np.float64) / 255.0
        check_space("pixels", x, labels, ks, v("pixel_inertia"), v("pixel_nmi"), v("pixel_purity"), v("pixel_ari"),
                    v("pixel_assignment"), v("pixel_cluster_size"), v("pixel_members"),
                    np.array(cl["pixel_query_index"][:]).astype(np.int64) if "pixel_query_index" in cl.variables
                    else query, v("pixel_neighbours"), v("pixel_neighbour_distance"), v("pixel_knn_accuracy"), knn_k)
    else:
        check(False, "clusters.nc has the pixel baseline")
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
