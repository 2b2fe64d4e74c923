#!/usr/bin/env python3
"""recon.nc recomputed with PyTorch, numpy and a numpy Philox
(tests/stages/test_reconstruct_reference.sh).

    recon_reference.py MODEL.nc CHECK=RECON.nc ...

Each recon.nc's settings come from its `conf` attribute; its data set must
be Fashion-MNIST's test images taken in order (positions are indices), and
phi.nc, stats.nc and clusters.nc, when needed, are read beside it. The
model is tests/fixtures/make_unet_fixture.py's BlindUNet in float64 (the
checkpoint converted by convert_checkpoint.py to-pt); phi and its noise are
tests/stages/phi_reference.py's, from docs/formats.md. For every file:

  - target_phi at every analysis sigma: the mean over the target's images
    (an image, or a cluster's members in clusters.nc) of their phi, each
    image with its index as its noise key: within 2e-5 of the largest |phi|;
  - sample_phi: the phi of the stored sample pixels, noise key 2^31 + pair:
    within 2e-5 of the largest |phi|;
  - phi_error: |sample_phi - target_phi| / |target_phi| over every channel,
    from the stored arrays: within 1e-6;
  - channel_mask: every channel for mask "all"; else the channels of that
    kind at reconstruct.mask_sigma by docs/analysis.md's definition on
    phi.nc (active: phi_c > theta max_c' phi_c' and phi_c > 0; non-selective
    when active in at least a share f of the images, dead in none,
    selective otherwise), never all or none; stats.nc's kind the same.

CHECK adds, for that file:

  trajectory  SPEC.md's sampler, run here without its projection (the run
              must have one too weak to move a pixel: reconstruct.lr 1e-9):
              fixed: x = m, then for sigma_k = linspace(sigma_max,
              sigma_min, steps): x = D(x + sigma_k z_k); adaptive: y = m +
              sigma0 z_0, then h = h0 t / (1 + h0 (t - 1)), d = D(y) - y,
              sigma = |d| / sqrt(N), stop below sigma_l with D(y), else y +=
              h d + gamma z_t, gamma = sigma sqrt((1 - beta h)^2 - (1 -
              h)^2). z_k is Philox stream (seed, RECON, target, sample, k), m
              the data set's mean pixel (docs/formats.md). The same step
              counts, the samples within 1e-4.
  adaptive    what the sampler promises: no sample failed, every one finite
              with pixels in [-0.2, 1.2], 1 <= steps <= max_steps, and its phi
              error below that of its starting image m + sigma0 z_0 at every
              analysis sigma.
  projection  the fixed sampler with its projection (a real reconstruct.lr,
              1 to 3 iterations), run here step by step: phi*_k the mean
              over the target's images of their phi at sigma_k (float32,
              reconstruct.draws draws, as target_phi), y = x + sigma_k z_k,
              y = P(y, phi*_k), x = D(y), with P as docs/conf.md defines it
              (project() below: the loss's gradient by autograd, Adam from
              its closed form, the stop rule). The stored samples within
              1e-5 (4.3e-7 measured); no loss ratio within 1% of
              reconstruct.stop_ratio (rounding could then stop a sample or
              not). Prints "RESULT NAME stops STOPPED PROJECTIONS".
  phi         the checks above only.

Prints "ok"/"FAIL" lines and, per file, "RESULT NAME mean phi error per
analysis sigma"; exits 0 only when all hold.
"""

import json
import os
import re
import sys

import netCDF4
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))
import philox  # noqa: E402
from denoise_reference import load_model  # noqa: E402
from phi_reference import phi_means, test_images  # noqa: E402

PHI_TOL = 2e-5
ERROR_TOL = 1e-6
TRAJECTORY_TOL = 1e-4
# The projection's pixels: 4.3e-7 measured. Its pixel gradients (about
# 1e-7) are near Adam's eps (1e-8), so the update follows the gradient's
# float32 rounding; 1e-5 leaves room for other CPUs' sums, and every wrong
# projection tried misses by 3e-2 or more.
PROJECTION_TOL = 1e-5
SAMPLE_KEY = 2 ** 31

failed = 0


def report(ok, text):
    global failed
    failed += not ok
    print("%s %s" % ("ok  " if ok else "FAIL", text))


def conf_values(text):
    """The effective conf a file carries (libconfig as semrep writes it):
    {"group.key": value}."""
    out, groups, pending = {}, [], None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^(\w+)\s*:$", line)
        if m:
            pending = m.group(1)
        elif line == "{":
            groups.append(pending)
        elif line.startswith("}"):
            groups.pop()
        else:
            m = re.match(r"^(\w+)\s*=\s*(.*);$", line)
            if not m:
                continue
            v = m.group(2)
            if v.startswith('"'):
                value = json.loads(v)
            elif v.startswith("["):
                value = [float(t) for t in v.strip("[] ").split(",") if t.strip()]
            elif v in ("true", "false"):
                value = v == "true"
            else:
                value = float(v) if re.search(r"[.eE]", v) else int(v)
            out[".".join(groups + [m.group(1)])] = value
    return out


def sigma_index(values, sigma):
    hits = [i for i, s in enumerate(values) if abs(s - sigma) < 1e-9]
    assert hits, "sigma %g not in %s" % (sigma, list(values))
    return hits[-1]


def mid_phi(model, x, keys, seed, sigma, draws):
    return phi_means(model, x, keys, seed, sigma, draws)[model.n]


def target_images(r, conf, folder):
    """Each target's images (positions, = indices)."""
    kinds, ids = np.array(r["target_kind"][:]), np.array(r["target_id"][:]).astype(np.int64)
    out = []
    for kind, ident in zip(kinds, ids):
        if kind == 0:
            out.append([int(ident)])
        elif kind == 1:
            c = netCDF4.Dataset(os.path.join(folder, "clusters.nc"))
            s = sigma_index(np.array(c["sigma"][:]), conf["reconstruct.cluster_sigma"])
            k = list(np.array(c["k"][:]))
            q = 0 if conf["reconstruct.cluster_k"] == 0 else k.index(conf["reconstruct.cluster_k"])
            members = np.array(c["members"][s, q, ident]).astype(np.int64)
            out.append([int(m) for m in members if m >= 0])
        else:
            out.append([])
    return out


def expected_mask(conf, folder, kmid):
    mask = conf["reconstruct.mask"]
    if mask == "all":
        return np.ones(kmid, bool), None
    p = netCDF4.Dataset(os.path.join(folder, "phi.nc"))
    s = sigma_index(np.array(p["sigma"][:]), conf["reconstruct.mask_sigma"])
    phi = np.array(p["phi"][s]).astype(np.float64)  # (image, channel), float32 values
    top = phi.max(1, keepdims=True)
    active = (phi > conf["stats.active_threshold"] * np.maximum(top, 0)) & (phi > 0)
    count = active.sum(0)
    share = count / phi.shape[0]
    kind = np.where(count == 0, 2, np.where(share >= conf["stats.nonselective_share"], 1, 0))
    return kind == (0 if mask == "selective" else 1), kind


def check_phi(name, path, model):
    """The checks every file gets; returns what the others need."""
    folder = os.path.dirname(os.path.abspath(path))
    r = netCDF4.Dataset(path)
    conf = conf_values(r.conf)
    assert conf["dataset.stride"] == 1 and conf["dataset.index_file"] == "", "positions must be indices"
    seed, draws = conf["seed"], conf["reconstruct.draws"]
    asigma = np.array(r["asigma"][:])
    samples = np.array(r["samples"][:])  # (T, S, C, H, W) float32
    T, S = samples.shape[:2]
    x = samples.reshape((T * S,) + samples.shape[2:])
    tphi = np.array(r["target_phi"][:]).astype(np.float64)
    sphi = np.array(r["sample_phi"][:]).astype(np.float64)
    error = np.array(r["phi_error"][:]).astype(np.float64)
    kmid = tphi.shape[-1]
    fails = np.array(r["failed"][:]).reshape(-1).astype(bool)
    good = ~fails & np.isfinite(x.reshape(T * S, -1)).all(1)
    conditional = conf["reconstruct.sampler"] != "unconditional"
    images = target_images(r, conf, folder)
    wanted = sorted({i for imgs in images for i in imgs})
    pixels = test_images(wanted)
    keys = np.arange(T * S) + SAMPLE_KEY
    for a, sigma in enumerate(asigma):
        if conditional:
            phi = mid_phi(model, pixels, wanted, seed, sigma, draws)
            ref = np.stack([phi[[wanted.index(i) for i in imgs]].mean(0) for imgs in images])
            worst = np.abs(tphi[a] - ref).max() / np.abs(ref).max()
            report(worst <= PHI_TOL, "%s: target_phi at sigma %.3f (%d draws, %s): worst %.2e of the largest"
                   % (name, sigma, draws, "targets of %s images" % [len(i) for i in images], worst))
        ref = mid_phi(model, x[good], keys[good], seed, sigma, draws)
        got = sphi[a].reshape(T * S, kmid)[good]
        worst = np.abs(got - ref).max() / np.abs(ref).max()
        report(worst <= PHI_TOL and good.any(), "%s: sample_phi at sigma %.3f of the %d stored samples: worst %.2e of "
               "the largest" % (name, sigma, int(good.sum()), worst))
        diff = sphi[a] - tphi[a][:, None, :]
        want = np.full((T, S), np.nan)
        if conditional:
            want = np.sqrt((diff ** 2).sum(-1) / (tphi[a] ** 2).sum(-1)[:, None])
        same = np.array_equal(np.isnan(want), np.isnan(error[a]))
        worst = np.nanmax(np.abs(error[a] - want)) if conditional else 0.0
        report(same and worst <= ERROR_TOL, "%s: phi_error at sigma %.3f from the stored phi: worst %.1e"
               % (name, sigma, worst))
    mask = np.array(r["channel_mask"][:]).astype(bool)
    want, kind = expected_mask(conf, folder, kmid)
    text = "%s: channel_mask (%s at sigma %g), %d of %d channels" % (name, conf["reconstruct.mask"],
                                                                      conf["reconstruct.mask_sigma"], want.sum(), kmid)
    if kind is not None:
        report(np.array_equal(mask, want) and 0 < want.sum() < kmid, text + ", as numpy finds them in phi.nc "
               "(%d differ)" % int((mask != want).sum()))
        st = netCDF4.Dataset(os.path.join(folder, "stats.nc"))
        skind = np.array(st["kind"][sigma_index(np.array(st["sigma"][:]), conf["reconstruct.mask_sigma"])])
        report(np.array_equal(skind, kind), "%s: stats.nc's kind at sigma %g as numpy finds it (%d differ)"
               % (name, conf["reconstruct.mask_sigma"], int((skind != kind).sum())))
    else:
        report(np.array_equal(mask, want), text)
    print("RESULT %s %s" % (name, " ".join("%.6f" % np.nanmean(error[a]) for a in range(len(asigma)))))
    return dict(r=r, conf=conf, x=x, T=T, S=S, asigma=asigma, tphi=tphi, error=error, fails=fails, seed=seed,
                images=images, wanted=wanted, pixels=pixels, mask=mask)


def mean_image(conf, shape):
    """The data set's mean pixel as an image (one channel: Fashion-MNIST)."""
    n = conf["dataset.limit"]
    assert n > 0, "dataset.limit must give the data set's size"
    m = test_images(range(n)).astype(np.float64).sum() / (n * np.prod(shape[-2:]))
    return np.full(shape, np.float32(m), np.float32)


def start_images(conf, T, S, shape):
    """y_0 = m + sigma0 z_0 of every (target, sample) pair, in float32."""
    seed, n = conf["seed"], int(np.prod(shape))
    m = mean_image(conf, shape)
    z = np.stack([philox.gaussian(seed, philox.DOMAIN["recon"], t, s, 0, n) for t in range(T) for s in range(S)])
    z = z.reshape((T * S,) + shape).astype(np.float32)
    return (m + np.float32(conf["reconstruct.sigma0"]) * z).astype(np.float32)


def denoise(model, y):
    with torch.no_grad():
        return model(torch.from_numpy(y.astype(np.float64))).numpy()


def project(model, y, want, mask, conf, ratios):
    """docs/conf.md's projection P(y, phi*) of the images y ((n, C, H, W)
    float32) towards want ((n, K) float32), the model fixed: Adam on the
    pixels, started afresh, on L = sum_c mask_c (abar_mid(y)_c - want_c)^2 /
    (masked channels), its gradient by autograd (float64); Adam's moments in
    float32 as PyTorch keeps them, the update in double as
    pipeline/core/backend.h's adam_masked documents: y -= lr (m / bc1) /
    (sqrt(v / bc2) + eps), bc = 1 - beta^step, beta1 0.9, beta2 0.999, eps
    1e-8. Before each update, from the second iteration on, a sample whose
    L is below stop_ratio of its first stops (no more updates); at most
    max_iter iterations. ratios collects those L / L_first."""
    R = lambda k: conf["reconstruct." + k]  # noqa: E731
    b1, b2, eps = np.float32(0.9), np.float32(0.999), np.float32(1e-8)
    y, m, v = y.copy(), np.zeros_like(y), np.zeros_like(y)
    w, target = torch.from_numpy(mask.astype(np.float64)), torch.from_numpy(want.astype(np.float64))
    active, first = np.ones(len(y), bool), None
    for it in range(R("max_iter")):
        yt = torch.from_numpy(y.astype(np.float64)).requires_grad_(True)
        _, means = model(yt, return_means=True)
        loss = (w * (means[model.n] - target) ** 2).sum(1) / w.sum()
        value = loss.detach().numpy()
        if it == 0:
            first = value
        else:
            ratios.extend((value / first)[active])
            active &= ~(value < R("stop_ratio") * first)
        if not active.any():
            break
        loss.sum().backward()
        g = yt.grad.numpy().astype(np.float32)
        m = (b1 * m + (np.float32(1) - b1) * g).astype(np.float32)
        v = (b2 * v + (np.float32(1) - b2) * g * g).astype(np.float32)
        bc1, bc2 = 1.0 - float(b1) ** (it + 1), 1.0 - float(b2) ** (it + 1)
        update = R("lr") * (m.astype(np.float64) / bc1) / (np.sqrt(v.astype(np.float64) / bc2) + float(eps))
        y[active] = (y[active] - update[active].astype(np.float32)).astype(np.float32)
    return y


def fixed_loop(conf, T, S, shape, model, targets=None):
    """SPEC.md's fixed-schedule sampler, without its projection, or with it
    when targets = (images of each target, their positions, their pixels,
    the mask, a list for the stop rule's loss ratios): phi*_k is then the
    mean over each target's images of their phi at sigma_k (in float32)
    with reconstruct.draws draws, as target_phi, and y = P(y, phi*_k)
    before the denoiser."""
    R = lambda k: conf["reconstruct." + k]  # noqa: E731
    seed, n, steps = conf["seed"], int(np.prod(shape)), R("steps")
    x = np.repeat(mean_image(conf, shape)[None], T * S, 0)
    for k in range(steps):
        sigma = R("sigma_max") if steps == 1 else R("sigma_max") + (R("sigma_min") - R("sigma_max")) * k / (steps - 1)
        z = np.stack([philox.gaussian(seed, philox.DOMAIN["recon"], t, s, k, n) for t in range(T) for s in range(S)])
        y = (x + np.float32(sigma) * z.reshape(x.shape).astype(np.float32)).astype(np.float32)
        if targets is not None:
            images, wanted, pixels, mask, ratios = targets
            phi = mid_phi(model, pixels, wanted, seed, np.float32(sigma), R("draws"))
            want = np.stack([phi[[wanted.index(i) for i in imgs]].mean(0) for imgs in images]).astype(np.float32)
            y = project(model, y, np.repeat(want, S, 0), mask, conf, ratios)
        x = denoise(model, y).astype(np.float32)
    return x, np.full(T * S, steps)


def adaptive_loop(conf, T, S, shape, model):
    """SPEC.md's adaptive sampler without its projection."""
    R = lambda k: conf["reconstruct." + k]  # noqa: E731
    seed, n = conf["seed"], int(np.prod(shape))
    beta = R("beta") if R("sampler") == "adaptive" else R("beta_unconditional")
    y = start_images(conf, T, S, shape)
    out = np.full_like(y, np.nan)
    steps = np.zeros(T * S, int)
    going = np.ones(T * S, bool)
    t = 1
    while going.any() and t <= R("max_steps"):
        h = R("h0") * t / (1 + R("h0") * (t - 1))
        den = denoise(model, y)
        d = den - y
        sigma = np.sqrt((d.reshape(T * S, -1) ** 2).mean(1))
        for i in np.flatnonzero(going):
            if sigma[i] < R("sigma_l"):
                out[i], steps[i], going[i] = den[i], t, False
                continue
            gamma = sigma[i] * np.sqrt(max((1 - beta * h) ** 2 - (1 - h) ** 2, 0.0))
            z = philox.gaussian(seed, philox.DOMAIN["recon"], i // S, i % S, t, n).reshape(shape)
            y[i] = (y[i] + h * d[i] + gamma * z).astype(np.float32)
        t += 1
    steps[going] = -1  # still going after max_steps: the run must not have stopped there
    return out, steps


def check_trajectory(name, f, model):
    conf, T, S, x = f["conf"], f["T"], f["S"], f["x"]
    sampler, lr = conf["reconstruct.sampler"], conf["reconstruct.lr"]
    report(lr <= 1e-8 or sampler == "unconditional", "%s: the projection cannot move a pixel (reconstruct.lr = %g)"
           % (name, lr))
    loop = fixed_loop if sampler == "fixed" else adaptive_loop
    out, steps = loop(conf, T, S, x.shape[1:], model)
    stored = np.array(f["r"]["steps"][:]).reshape(-1)
    report(np.array_equal(stored, steps), "%s: %s sampler's steps %s, SPEC.md's loop in PyTorch %s"
           % (name, sampler, stored.tolist(), steps.tolist()))
    worst = np.abs(x - out).max() if np.isfinite(out).all() else np.inf
    report(worst <= TRAJECTORY_TOL, "%s: the samples, PyTorch's D(y) at the last step: worst %.1e" % (name, worst))


def check_projection(name, f, model):
    """The fixed sampler with a real projection, run here step by step with
    project(): the same pixels within PROJECTION_TOL."""
    conf, T, S, x = f["conf"], f["T"], f["S"], f["x"]
    R = lambda k: conf["reconstruct." + k]  # noqa: E731
    report(R("sampler") == "fixed" and R("lr") >= 1e-3 and 1 <= R("max_iter") <= 3,
           "%s: a projection that moves pixels (reconstruct.lr = %g, max_iter = %d, %s sampler)"
           % (name, R("lr"), R("max_iter"), R("sampler")))
    ratios = []
    out, _ = fixed_loop(conf, T, S, x.shape[1:], model,
                        targets=(f["images"], f["wanted"], f["pixels"], f["mask"].astype(np.float64), ratios))
    ratios = np.array(ratios)
    stops = int((ratios < R("stop_ratio")).sum())
    # the stop rule is a threshold: a loss ratio within 1% of it could fall
    # either way with float32 rounding, and the check would not be exact
    near = np.abs(ratios / R("stop_ratio") - 1).min() if len(ratios) and R("stop_ratio") > 0 else np.inf
    report(near > 0.01, "%s: the stop rule (stop_ratio %g) stopped %d of %d projections early; loss ratios %.3f .. "
           "%.3f, the nearest %.1f%% from the threshold" % (name, R("stop_ratio"), stops, T * S * R("steps"),
                                                            ratios.min(), ratios.max(), 100 * near))
    worst = np.abs(x - out).max() if np.isfinite(out).all() else np.inf
    report(worst <= PROJECTION_TOL, "%s: the samples after %d steps of %d projection iterations (mask %s, %d of %d "
           "channels), PyTorch's: worst %.1e" % (name, R("steps"), R("max_iter"), conf["reconstruct.mask"],
                                                 int(f["mask"].sum()), len(f["mask"]), worst))
    print("RESULT %s stops %d %d" % (name, stops, T * S * R("steps")))


def check_adaptive(name, f, model):
    conf, T, S, x = f["conf"], f["T"], f["S"], f["x"]
    R = lambda k: conf["reconstruct." + k]  # noqa: E731
    steps = np.array(f["r"]["steps"][:]).reshape(-1)
    report(not f["fails"].any(), "%s: no sample failed" % name)
    report(np.isfinite(x).all() and x.min() >= -0.2 and x.max() <= 1.2,
           "%s: every sample finite, pixels in [%.3f, %.3f]" % (name, np.nanmin(x), np.nanmax(x)))
    report(((steps >= 1) & (steps <= R("max_steps"))).all(),
           "%s: steps %s within 1 .. %d" % (name, steps.tolist(), R("max_steps")))
    y0 = start_images(conf, T, S, x.shape[1:])
    keys = np.arange(T * S) + SAMPLE_KEY
    for a, sigma in enumerate(f["asigma"]):
        phi0 = mid_phi(model, y0, keys, f["seed"], sigma, R("draws")).reshape(T, S, -1)
        tphi = f["tphi"][a]
        e0 = np.sqrt(((phi0 - tphi[:, None]) ** 2).sum(-1) / (tphi ** 2).sum(-1)[:, None])
        report((f["error"][a] < e0).all(), "%s: phi error at sigma %.3f below the starting image's: %s < %s"
               % (name, sigma, np.round(f["error"][a].reshape(-1), 3).tolist(), np.round(e0.reshape(-1), 3).tolist()))


def main():
    torch.set_num_threads(1)
    model = load_model(sys.argv[1])
    for arg in sys.argv[2:]:
        check, path = arg.split("=", 1)
        name = os.path.basename(os.path.dirname(os.path.abspath(path)))
        f = check_phi(name, path, model)
        if check == "trajectory":
            check_trajectory(name, f, model)
        elif check == "adaptive":
            check_adaptive(name, f, model)
        elif check == "projection":
            check_projection(name, f, model)
        else:
            assert check == "phi", "unknown check %s" % check
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
