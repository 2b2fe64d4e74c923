#!/usr/bin/env python3
"""Tests for pipeline/io/convert_checkpoint.py (PyTorch .pt <-> semrep NetCDF).

Usage (from the repo root):
    /usr/bin/python3 tests/convert/test_convert.py

Each check runs in its own temporary folder and runs the converter as a
subprocess (as a user would), on tiny BlindUNet models built with
tests/fixtures/make_unet_fixture.py.  Prints "ok"/"FAIL" per check and a
last line "N passed, M failed"; exit status 0 only if none failed.  If
torch, numpy, netCDF4 or xxhash cannot be imported, or ncdump (netcdf-bin)
is missing, it says which and exits 77, which CTest reports as skipped
(never as passed); under tests/run.sh, which installs them
(SEMREP_TESTS_INSTALLED=1), it exits 1 instead: a missing package is then a
defect of the machine or of run.sh's list.

Checks:
  1. round trip .pt -> .nc -> .pt: same keys in the same order, bitwise equal
     float32 tensors (layer and batch variants);
  2. variants: "module." prefix stripped, batch norm (running_sd kept,
     norm = "batch"), upsample bias (upsample_bias attribute), --output
     recorded, state dict wrapped in "state_dict"/"model_state_dict", a
     whole pickled nn.Module;
  3. the checksum attribute equals an independent XXH3-64 recomputation
     (docs/formats.md), changes when one weight changes, and to-pt refuses a
     file whose values were edited;
  4. shape attributes equal the BlindUNet config and `parameters` the number
     of trainable parameters, for several configs;
  5. refusals: missing key, unexpected key (extra conv, instance-norm style
     weight/bias), NaN and inf weights (exit 1, one stderr line naming the
     key, no output file left); no --output (usage error, exit 2);
  6. the committed tests/fixtures/converted_tiny.nc has the documented
     attributes with their types, float32 variables and a valid checksum,
     and converted_tiny.bin has the input/output records.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
CONVERTER = os.path.join(ROOT, "pipeline", "io", "convert_checkpoint.py")

INSTALLED = os.environ.get("SEMREP_TESTS_INSTALLED") == "1"


def missing(what):
    """A missing module or tool: skipped (77), or a failure under tests/run.sh."""
    if INSTALLED:
        print("FAILED: %s, which tests/run.sh installs" % what)
        sys.exit(1)
    print("SKIPPED: %s" % what)
    sys.exit(77)


try:
    import numpy as np
    import torch
    import netCDF4
    import xxhash
except ImportError as e:  # pragma: no cover - depends on the machine
    missing("%s (needs python3-torch, python3-netcdf4, python3-xxhash)" % e)
if not shutil.which("ncdump"):
    missing("no ncdump (needs netcdf-bin) for the attribute type check")

sys.path.insert(0, FIXTURES)
import make_unet_fixture as muf  # noqa: E402

# configs as make_unet_fixture.BlindUNet keyword arguments
LAYER = dict(in_ch=2, kernels=[4, 6, 8], enc_convs=[2, 1], mid_convs=2,
             dec_convs=[2, 2], norm="layer", output="clean",
             up_bias=[False, False])
BATCH = dict(in_ch=1, kernels=[3, 5, 7], enc_convs=[1, 2], mid_convs=2,
             dec_convs=[1, 2], norm="batch", output="residual",
             up_bias=[False, True])
DEEP = dict(in_ch=3, kernels=[2, 3, 4, 5], enc_convs=[3, 1, 2], mid_convs=3,
            dec_convs=[3, 1, 2], norm="layer", output="clean",
            up_bias=[True, True, True])

TEXT_ATTRS = ("format", "norm", "output", "checksum", "source")
INT_ATTRS = ("format_version", "in_channels", "kernels", "enc_convs",
             "mid_convs", "dec_convs", "upsample_bias")


# ---------------------------------------------------------------- helpers
def make_model(cfg, seed=1):
    torch.manual_seed(seed)
    model = muf.BlindUNet(**cfg)
    muf.init_params(model)
    return model


def state_of(model, prefix=""):
    return {prefix + k: v.detach().clone() for k, v in model.state_dict().items()}


def run(*args, env=None):
    return subprocess.run([sys.executable, CONVERTER] + [str(a) for a in args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, timeout=300)


def to_nc(tmp, state, output="clean", name="m", extra=()):
    pt = os.path.join(tmp, name + ".pt")
    nc = os.path.join(tmp, name + ".nc")
    torch.save(state, pt)
    r = run("to-nc", pt, nc, "--output", output, *extra)
    assert r.returncode == 0, "to-nc failed (%d): %s" % (r.returncode, r.stderr)
    return nc


def read_nc(path):
    """(attributes dict, ordered {name: numpy array}, {name: dtype})"""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        attrs = {a: ds.getncattr(a) for a in ds.ncattrs()}
        arrays = {k: np.array(v[...]) for k, v in ds.variables.items()}
        dtypes = {k: v.dtype for k, v in ds.variables.items()}
        dims = {k: v.dimensions for k, v in ds.variables.items()}
        alldims = {d: len(x) for d, x in ds.dimensions.items()}
    return attrs, arrays, dtypes, dims, alldims


def ints(v):
    return [int(x) for x in np.atleast_1d(v)]


def xxh3_checksum(arrays):
    """Independent implementation of docs/formats.md's checksum."""
    h = xxhash.xxh3_64(seed=0)
    for name in sorted(arrays, key=lambda s: s.encode("utf-8")):
        h.update(name.encode("utf-8"))
        h.update(b"\x00")
        h.update(np.asarray(arrays[name], dtype="<f4").tobytes(order="C"))
    return "%016x" % h.intdigest()


def bits(t):
    return np.ascontiguousarray(t.numpy()).view(np.uint32)


def assert_refused(r, tmp, *needles):
    assert r.returncode == 1, "exit %d, expected 1 (stderr: %r)" % (r.returncode, r.stderr)
    lines = r.stderr.strip("\n").split("\n")
    assert len(lines) == 1, "stderr is not one line: %r" % r.stderr
    assert lines[0].startswith("convert_checkpoint: error: "), lines[0]
    for n in needles:
        assert n in lines[0], "%r not named in %r" % (n, lines[0])
    left = [f for f in os.listdir(tmp) if not f.endswith(".pt")]
    assert not left, "files left behind: %s" % left


def assert_attr_types(path):
    """Text attributes NC_CHAR (read back as str, and not `string` in ncdump),
    int attributes int32, parameters int64."""
    with netCDF4.Dataset(path) as ds:
        for a in TEXT_ATTRS:
            if a in ds.ncattrs():
                assert isinstance(ds.getncattr(a), str), (a, type(ds.getncattr(a)))
        for a in INT_ATTRS:
            v = np.atleast_1d(ds.getncattr(a))
            assert v.dtype == np.int32, (a, v.dtype)
        p = np.atleast_1d(ds.getncattr("parameters"))
        assert p.dtype == np.int64 and p.size == 1, ("parameters", p.dtype, p.size)
    out = subprocess.run([shutil.which("ncdump"), "-h", path], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert "string :" not in out, "an attribute is NC_STRING:\n" + out


def assert_dims(dims, alldims, arrays):
    for d, n in alldims.items():
        assert d == "n%d" % n, "dimension %s has length %d" % (d, n)
    for k, a in arrays.items():
        assert tuple(dims[k]) == tuple("n%d" % s for s in a.shape), (k, dims[k])


# ---------------------------------------------------------------- checks
def check_round_trip(tmp):
    for i, cfg in enumerate((LAYER, BATCH, DEEP)):
        sd = state_of(make_model(cfg, seed=10 + i))
        nc = to_nc(tmp, sd, cfg["output"], name="rt%d" % i)
        back = os.path.join(tmp, "rt%d_back.pt" % i)
        r = run("to-pt", nc, back)
        assert r.returncode == 0, "to-pt failed: %s" % r.stderr
        got = torch.load(back, map_location="cpu")
        assert list(got) == list(sd), "keys differ:\n%s\n%s" % (list(got), list(sd))
        for k in sd:
            assert got[k].dtype == torch.float32, (k, got[k].dtype)
            assert tuple(got[k].shape) == tuple(sd[k].shape), k
            assert np.array_equal(bits(got[k]), bits(sd[k])), "%s differs" % k
        # and the .nc -> .pt -> .nc trip keeps the checksum
        nc2 = to_nc(tmp, got, cfg["output"], name="rt%d_again" % i)
        assert read_nc(nc2)[0]["checksum"] == read_nc(nc)[0]["checksum"]


def check_variants(tmp):
    # module. prefix, batch norm, upsample bias, residual
    model = make_model(BATCH, seed=3)
    sd = state_of(model)
    nc = to_nc(tmp, state_of(model, "module."), "residual", name="dp")
    attrs, arrays, _, _, _ = read_nc(nc)
    assert list(arrays) == list(sd), list(arrays)
    assert not any(k.startswith("module.") for k in arrays)
    assert attrs["norm"] == "batch", attrs["norm"]
    assert attrs["output"] == "residual", attrs["output"]
    assert ints(attrs["upsample_bias"]) == [0, 1], attrs["upsample_bias"]
    sds = [k for k in sd if k.endswith(".running_sd")]
    assert sds, "the batch model has no running_sd"
    for k in sds:
        assert np.array_equal(arrays[k], sd[k].numpy()), k
        assert arrays[k].shape == (1, sd[k].shape[1], 1, 1), k
    assert "upsample.1.bias" in arrays and "upsample.0.bias" not in arrays

    # layer norm, bias on level 0 only, clean
    cfg = dict(LAYER, up_bias=[True, False])
    sd = state_of(make_model(cfg, seed=4))
    attrs, arrays, _, _, _ = read_nc(to_nc(tmp, sd, "clean", name="ub"))
    assert attrs["norm"] == "layer" and attrs["output"] == "clean"
    assert ints(attrs["upsample_bias"]) == [1, 0]
    assert not any(k.endswith(".running_sd") for k in arrays)
    assert np.array_equal(arrays["upsample.0.bias"], sd["upsample.0.bias"].numpy())

    # the same weights with --output residual differ only in `output`
    a2 = read_nc(to_nc(tmp, sd, "residual", name="ub_res"))[0]
    assert a2["output"] == "residual"
    assert a2["checksum"] == attrs["checksum"]

    # wrapped state dicts and a whole pickled module
    for wrap in ("state_dict", "model_state_dict"):
        w = {wrap: state_of(make_model(LAYER, seed=5), "module."), "epoch": 7}
        arrays = read_nc(to_nc(tmp, w, "clean", name="w_" + wrap))[1]
        assert list(arrays) == list(state_of(make_model(LAYER, seed=5))), wrap
    model = make_model(LAYER, seed=6)
    pt = os.path.join(tmp, "whole.pt")
    torch.save(model, pt)
    env = dict(os.environ)
    env["PYTHONPATH"] = FIXTURES + os.pathsep + env.get("PYTHONPATH", "")
    r = run("to-nc", pt, os.path.join(tmp, "whole.nc"), "--output", "clean", env=env)
    assert r.returncode == 0, r.stderr
    arrays = read_nc(os.path.join(tmp, "whole.nc"))[1]
    for k, v in model.state_dict().items():
        assert np.array_equal(arrays[k], v.numpy()), k

    # source: default is the .pt path; --source overrides; '' omits it
    attrs = read_nc(os.path.join(tmp, "whole.nc"))[0]
    assert attrs["source"] == pt, attrs.get("source")
    sd = state_of(make_model(LAYER, seed=7))
    a = read_nc(to_nc(tmp, sd, "clean", name="s1", extra=("--source", "from Zürich")))[0]
    assert a["source"] == "from Zürich", a["source"]
    a = read_nc(to_nc(tmp, sd, "clean", name="s2", extra=("--source", "")))[0]
    assert "source" not in a
    assert_attr_types(os.path.join(tmp, "s1.nc"))


def check_checksum(tmp):
    sd = state_of(make_model(BATCH, seed=8))
    nc = to_nc(tmp, sd, "residual", name="c0")
    attrs, arrays, _, _, _ = read_nc(nc)
    s0 = attrs["checksum"]
    assert isinstance(s0, str) and len(s0) == 16 and all(c in "0123456789abcdef" for c in s0), s0
    assert xxh3_checksum(arrays) == s0, (xxh3_checksum(arrays), s0)
    # the same from the original tensors (order of the dict does not matter)
    assert xxh3_checksum({k: v.numpy() for k, v in reversed(list(sd.items()))}) == s0

    # one weight changed by one ulp -> another checksum
    sd2 = {k: v.clone() for k, v in sd.items()}
    w = sd2["mid.0.weight"].view(-1)
    w[5] = float(np.nextafter(np.float32(w[5].item()), np.float32(np.inf)))
    attrs2, arrays2, _, _, _ = read_nc(to_nc(tmp, sd2, "residual", name="c1"))
    assert attrs2["checksum"] != s0
    assert xxh3_checksum(arrays2) == attrs2["checksum"]

    # to-pt verifies it: edit one value in place -> refused naming the checksum
    with netCDF4.Dataset(nc, "a") as ds:
        v = ds["decoder.0.0.bias"]
        a = v[...]
        a[0] += 1.0
        v[...] = a
    out = os.path.join(tmp, "c0_back.pt")
    r = run("to-pt", nc, out)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr.startswith("convert_checkpoint: error: ") and "checksum" in r.stderr, r.stderr
    assert len(r.stderr.strip().split("\n")) == 1, r.stderr
    assert not os.path.exists(out)

    # to-pt refuses a NetCDF file that is not a checkpoint
    other = os.path.join(tmp, "other.nc")
    with netCDF4.Dataset(other, "w") as ds:
        ds.setncattr("format", "semrep-embeddings")
        ds.setncattr("format_version", np.int32(1))
    r = run("to-pt", other, out)
    assert r.returncode == 1 and "format" in r.stderr, (r.returncode, r.stderr)


def check_shape_attrs(tmp):
    cfgs = [LAYER, BATCH, DEEP,
            dict(in_ch=1, kernels=[3, 5], enc_convs=[1], mid_convs=1,
                 dec_convs=[1], norm="batch", output="clean", up_bias=[True])]
    for i, cfg in enumerate(cfgs):
        model = make_model(cfg, seed=20 + i)
        nc = to_nc(tmp, state_of(model, "module." if i % 2 else ""),
                   cfg["output"], name="s%d" % i)
        attrs, arrays, dtypes, dims, alldims = read_nc(nc)
        assert attrs["format"] == "semrep-checkpoint", attrs["format"]
        assert ints(attrs["format_version"]) == [1]
        assert ints(attrs["in_channels"]) == [cfg["in_ch"]], attrs["in_channels"]
        assert ints(attrs["kernels"]) == cfg["kernels"], attrs["kernels"]
        assert ints(attrs["enc_convs"]) == cfg["enc_convs"], attrs["enc_convs"]
        assert ints(attrs["mid_convs"]) == [cfg["mid_convs"]], attrs["mid_convs"]
        assert ints(attrs["dec_convs"]) == cfg["dec_convs"], attrs["dec_convs"]
        assert attrs["norm"] == cfg["norm"] and attrs["output"] == cfg["output"]
        assert ints(attrs["upsample_bias"]) == [int(b) for b in cfg["up_bias"]]
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert int(attrs["parameters"]) == n == muf.n_trainable(model), \
            (attrs["parameters"], n)
        assert all(dt == np.float32 for dt in dtypes.values())
        assert_dims(dims, alldims, arrays)
        assert_attr_types(nc)


def check_refusals(tmp):
    model = make_model(LAYER, seed=30)
    base = state_of(model, "module.")
    cases = []

    sd = dict(base)
    del sd["module.mid.4.gammas"]
    cases.append(("missing", sd, ["mid.4.gammas"]))

    sd = dict(base)
    del sd["module.encoder.1.0.bias"]
    cases.append(("missing bias", sd, ["encoder.1.0.bias"]))

    sd = dict(base)
    sd["module.encoder.0.5.weight"] = torch.zeros(4, 4, 3, 3)
    cases.append(("extra conv", sd, ["encoder.0.5.weight"]))

    sd = dict(base)
    sd["module.decoder.1.7.bias"] = torch.zeros(6)
    cases.append(("stray key", sd, ["decoder.1.7.bias"]))

    # instance-norm style: affine weight/bias (C,) in place of gammas
    sd = {}
    for k, v in base.items():
        if k.endswith(".gammas"):
            sd[k[:-len("gammas")] + "weight"] = v.reshape(-1).clone()
            sd[k[:-len("gammas")] + "bias"] = torch.zeros(v.numel())
        else:
            sd[k] = v
    cases.append(("instance norm", sd, ["encoder.0.3.weight"]))

    sd = dict(base)
    sd["module.encoder.1.1.running_mean"] = torch.zeros(6)
    cases.append(("norm buffer", sd, ["encoder.1.1.running_mean"]))

    sd = dict(base)
    sd["module.mid.0.weight"] = torch.zeros(8, 5, 3, 3)
    cases.append(("wrong shape", sd, ["mid.0.weight"]))

    sd = dict(base)
    t = sd["module.decoder.1.0.weight"].clone()
    t.view(-1)[17] = float("nan")
    sd["module.decoder.1.0.weight"] = t
    cases.append(("nan", sd, ["decoder.1.0.weight"]))

    sd = dict(base)
    t = sd["module.encoder.0.3.gammas"].clone()
    t.view(-1)[1] = float("inf")
    sd["module.encoder.0.3.gammas"] = t
    cases.append(("inf", sd, ["encoder.0.3.gammas"]))

    for i, (label, sd, needles) in enumerate(cases):
        sub = os.path.join(tmp, "r%d" % i)
        os.mkdir(sub)
        pt = os.path.join(sub, "bad.pt")
        torch.save(sd, pt)
        r = run("to-nc", pt, os.path.join(sub, "bad.nc"), "--output", "clean")
        try:
            assert_refused(r, sub, *needles)
        except AssertionError as e:
            raise AssertionError("%s: %s" % (label, e))

    # usage error: no --output
    sub = os.path.join(tmp, "usage")
    os.mkdir(sub)
    pt = os.path.join(sub, "ok.pt")
    torch.save(base, pt)
    r = run("to-nc", pt, os.path.join(sub, "ok.nc"))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--output" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(sub, "ok.nc"))
    r = run("to-nc", pt, os.path.join(sub, "ok.nc"), "--output", "noise")
    assert r.returncode == 2, (r.returncode, r.stderr)
    # a missing input file
    r = run("to-nc", os.path.join(sub, "nope.pt"), os.path.join(sub, "x.nc"),
            "--output", "clean")
    assert_refused(r, sub, "nope.pt")


def check_fixture(tmp):
    nc = os.path.join(FIXTURES, "converted_tiny.nc")
    assert os.path.isfile(nc), "missing %s (run tests/fixtures/make_converted_fixture.py)" % nc
    attrs, arrays, dtypes, dims, alldims = read_nc(nc)
    documented = ["format", "format_version", "in_channels", "kernels",
                  "enc_convs", "mid_convs", "dec_convs", "norm", "output",
                  "upsample_bias", "parameters", "checksum"]
    for a in documented:
        assert a in attrs, "no attribute %s" % a
    assert set(attrs) <= set(documented) | {"conf", "source"}, sorted(attrs)
    assert attrs["format"] == "semrep-checkpoint"
    assert ints(attrs["format_version"]) == [1]
    assert ints(attrs["in_channels"]) == [3]
    assert ints(attrs["kernels"]) == [4, 6, 8]
    assert ints(attrs["enc_convs"]) == [2, 1]
    assert ints(attrs["mid_convs"]) == [2]
    assert ints(attrs["dec_convs"]) == [2, 2]
    assert attrs["norm"] == "layer" and attrs["output"] == "residual"
    assert ints(attrs["upsample_bias"]) == [0, 1]
    assert_attr_types(nc)
    for k, dt in dtypes.items():
        assert dt == np.float32, (k, dt)
    assert not any(k.startswith("module.") for k in arrays)
    assert_dims(dims, alldims, arrays)
    assert xxh3_checksum(arrays) == attrs["checksum"]
    # the variables are exactly the layout of that config, in state-dict order
    cfg = dict(in_ch=3, kernels=[4, 6, 8], enc_convs=[2, 1], mid_convs=2,
               dec_convs=[2, 2], norm="layer", output="residual",
               up_bias=[False, True])
    ref = muf.BlindUNet(**cfg)
    assert list(arrays) == list(ref.state_dict()), list(arrays)
    for k, v in ref.state_dict().items():
        assert arrays[k].shape == tuple(v.shape), k
    assert int(attrs["parameters"]) == muf.n_trainable(ref)
    # the converter itself accepts it
    r = run("to-pt", nc, os.path.join(tmp, "fixture.pt"))
    assert r.returncode == 0, r.stderr

    recs = muf.read_records(os.path.join(FIXTURES, "converted_tiny.bin"))
    assert [n for n, _ in recs] == ["input", "output"], [n for n, _ in recs]
    for _, a in recs:
        assert a.shape == (2, 3, 8, 8) and np.isfinite(a).all()
    # the recorded output is this model's residual forward (float64 reference)
    model = muf.BlindUNet(**cfg)
    model.load_state_dict({k: torch.from_numpy(a) for k, a in arrays.items()})
    model = model.double().eval()
    with torch.no_grad():
        out = model(torch.from_numpy(recs[0][1].copy()).double())
    assert np.array_equal(out.float().numpy(), recs[1][1])


CHECKS = [
    ("1 round trip", check_round_trip),
    ("2 variants", check_variants),
    ("3 checksum", check_checksum),
    ("4 shape attributes", check_shape_attrs),
    ("5 refusals", check_refusals),
    ("6 committed fixture", check_fixture),
]


def main():
    passed = failed = 0
    for label, fn in CHECKS:
        tmp = tempfile.mkdtemp(prefix="semrep_convert_")
        try:
            fn(tmp)
        except Exception:  # noqa: BLE001 - report and go on
            failed += 1
            print("FAIL %s" % label)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print("ok   %s" % label)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
