#!/usr/bin/env python3
"""Convert a blind-UNet checkpoint between PyTorch (.pt) and semrep's NetCDF.

What it does
------------
  to-nc  reads an authors' PyTorch state dict (.pt), works out the UNet's
         shape from its keys, checks that the keys and shapes are exactly
         the layout that shape implies, and writes a semrep model checkpoint
         (NetCDF-4, format "semrep-checkpoint" version 1, docs/formats.md):
         one float32 variable per state-dict entry (same name, PyTorch
         shape, state-dict order), dimensions shared by length and named
         n<length>, and the global attributes format, format_version,
         in_channels, kernels, enc_convs, mid_convs, dec_convs, norm,
         output, upsample_bias, parameters, checksum and source.
  to-pt  reads a semrep model checkpoint, checks its format, version,
         layout and checksum, and writes the weights back as a PyTorch
         state dict of float32 tensors (keys in the file's variable order).
         The .pt cannot record `output` or `norm`; they are printed.

Usage
-----
  convert_checkpoint.py to-nc MODEL.pt OUT.nc --output clean|residual
                        [--source TEXT]
  convert_checkpoint.py to-pt IN.nc OUT.pt

  --output   required: whether the network outputs the clean image
             ("clean", x_hat = f(y)) or the noise ("residual",
             x_hat = y - f(y)).  A state dict cannot say which.
  --source   text stored in the `source` attribute (default: the MODEL.pt
             path as given; an empty string leaves the attribute out).

Needs python3 with torch, numpy, netCDF4 and xxhash (Debian: python3-torch,
python3-netcdf4, python3-xxhash).

Inputs and variants handled
---------------------------
  - the .pt may hold the state dict itself, a dict with a "state_dict" or
    "model_state_dict" entry, or a whole nn.Module (its .state_dict() is
    used; its class must then be importable);
  - keys prefixed "module." (saved from DataParallel): the prefix is removed;
  - the batch-norm variant (norm layers with a `running_sd` buffer,
    (1, C, 1, 1)): recorded as norm = "batch", running_sd kept;
    otherwise norm = "layer" (per-image StdNorm, `gammas` only);
  - a bias on upsample.{b} (the authors' upsample_with_bias): recorded per
    level in upsample_bias and kept;
  - residual-output models: say --output residual.
  Shape inferred from the keys: in_channels and kernels from the first conv
  of each encoder block and of the middle block; enc_convs, mid_convs and
  dec_convs from the number of convolutions in each block (decoder 0's count
  includes the final conv).  Tensors of another floating type are stored
  rounded to float32 (with a warning).

Refused, with one line naming the first offending key: any key the inferred
layout does not have (e.g. an instance-norm or affine-norm layer's
weight/bias/running_mean, an extra conv), any key it needs that is missing,
a tensor with the wrong shape, a non-floating tensor, and a NaN or infinite
value.  Errors go to stderr as "convert_checkpoint: error: ..." and exit 1;
usage errors exit 2.  Output files are written as NAME.tmp.PID and renamed
into place, so a file with the final name is always complete.
"""

import argparse
import os
import re
import sys

PROG = "convert_checkpoint"
FORMAT = "semrep-checkpoint"
FORMAT_VERSION = 1


class ConvertError(Exception):
    """A refusal: the message is printed as one line, exit status 1."""


def _import(name, package):
    try:
        return __import__(name)
    except ImportError as e:
        raise ConvertError("cannot import %s (%s); run with a python3 that has "
                           "it (Debian: apt-get install %s)" % (name, e, package))


# ------------------------------------------------------------------ layout
def _block_positions(kind, b, count):
    """(conv index, norm index or None) for each conv of one Sequential block.

    kind is "encoder", "mid" or "decoder".  Indices count every module of
    the authors' Sequential (convs, norms and ReLUs)."""
    out = []
    if kind == "encoder" and b == 0:
        out.append((0, None))                      # conv, ReLU
        for i in range(1, count):
            p = 2 + 3 * (i - 1)
            out.append((p, p + 1))                 # conv, N, ReLU
    elif kind == "decoder" and b == 0:
        for i in range(count - 1):
            out.append((3 * i, 3 * i + 1))
        out.append((3 * (count - 1), None))        # final conv: no N, no R
    else:
        for i in range(count):
            out.append((3 * i, 3 * i + 1))
    return out


def _block_keys(kind, b, count, norm):
    prefix = "%s.%d." % (kind, b) if kind != "mid" else "mid."
    keys = []
    for conv, nrm in _block_positions(kind, b, count):
        keys += [prefix + "%d.weight" % conv, prefix + "%d.bias" % conv]
        if nrm is not None:
            keys.append(prefix + "%d.gammas" % nrm)
            if norm == "batch":
                keys.append(prefix + "%d.running_sd" % nrm)
    return keys


def layout(in_ch, kernels, enc_convs, mid_convs, dec_convs, norm, up_bias):
    """Ordered [(key, shape)] of the authors' UNet state dict for this shape."""
    K = list(kernels)
    n = len(K) - 1
    out = []

    def block(kind, b, count, cins, couts):
        convs = _block_positions(kind, b, count)
        prefix = "%s.%d." % (kind, b) if kind != "mid" else "mid."
        for (conv, nrm), cin, cout in zip(convs, cins, couts):
            out.append((prefix + "%d.weight" % conv, (cout, cin, 3, 3)))
            out.append((prefix + "%d.bias" % conv, (cout,)))
            if nrm is not None:
                out.append((prefix + "%d.gammas" % nrm, (1, cout, 1, 1)))
                if norm == "batch":
                    out.append((prefix + "%d.running_sd" % nrm, (1, cout, 1, 1)))

    for b in range(n):
        c = enc_convs[b]
        first = in_ch if b == 0 else K[b - 1]
        block("encoder", b, c, [first] + [K[b]] * (c - 1), [K[b]] * c)
    block("mid", 0, mid_convs, [K[n - 1]] + [K[n]] * (mid_convs - 1),
          [K[n]] * mid_convs)
    for b in range(n):
        out.append(("upsample.%d.weight" % b, (K[b + 1], K[b], 2, 2)))
        if up_bias[b]:
            out.append(("upsample.%d.bias" % b, (K[b],)))
    for b in range(n):
        c = dec_convs[b]
        if b == 0:
            cins = [2 * K[0]] + [K[0]] * (c - 2) + [K[0]] if c > 1 else [2 * K[0]]
            couts = [K[0]] * (c - 1) + [in_ch]
        else:
            cins = [2 * K[b]] + [K[b]] * (c - 1)
            couts = [K[b]] * c
        block("decoder", b, c, cins, couts)
    return out


def _closest_count(kind, b, present, norm):
    """Number of convs whose key set is closest to the keys present in a block
    (fewest unexpected + missing; ties go to the larger count)."""
    idx = [int(m.group(1)) for m in (re.match(r"(\d+)\.", k) for k in present) if m]
    top = (max(idx) if idx else 0) + 2
    best, best_cost = 1, None
    for c in range(1, top + 1):
        want = set(_block_keys(kind, b, c, norm))
        prefix = "%s.%d." % (kind, b) if kind != "mid" else "mid."
        have = {prefix + k for k in present}
        cost = len(have - want) + len(want - have)
        if best_cost is None or cost <= best_cost:
            best, best_cost = c, cost
    return best


def _shape_str(shape):
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def infer_shape(shapes, path):
    """shapes: ordered {key: shape tuple}, prefix already stripped.
    Returns the shape attributes (a dict) or raises ConvertError."""
    keys = list(shapes)
    enc_blocks = set()
    for k in keys:
        m = re.match(r"encoder\.(\d+)\.", k)
        if m:
            enc_blocks.add(int(m.group(1)))
    if not enc_blocks:
        raise ConvertError("%s: no encoder.{b}.* keys (first key %r): not a "
                           "state dict of the authors' UNet"
                           % (path, keys[0] if keys else None))
    n = max(enc_blocks) + 1
    for b in range(n):
        if b not in enc_blocks:
            raise ConvertError("%s: missing key 'encoder.%d.0.weight' (there "
                               "are encoder.%d.* keys)" % (path, b, n - 1))

    def need(k, ndim=4):
        if k not in shapes:
            raise ConvertError("%s: missing key %r (needed to infer the model "
                               "shape); not a complete state dict of the "
                               "authors' UNet" % (path, k))
        if len(shapes[k]) != ndim:
            raise ConvertError("%s: key %r has shape %s, expected %d dimensions "
                               "(a conv weight)" % (path, k, _shape_str(shapes[k]), ndim))
        return shapes[k]

    in_ch = int(need("encoder.0.0.weight")[1])
    kernels = [int(need("encoder.%d.0.weight" % b)[0]) for b in range(n)]
    kernels.append(int(need("mid.0.weight")[0]))
    norm = "batch" if any(k.endswith(".running_sd") for k in keys) else "layer"

    def present(prefix):
        return [k[len(prefix):] for k in keys if k.startswith(prefix)]

    enc = [_closest_count("encoder", b, present("encoder.%d." % b), norm)
           for b in range(n)]
    mid = _closest_count("mid", 0, present("mid."), norm)
    dec = [_closest_count("decoder", b, present("decoder.%d." % b), norm)
           for b in range(n)]
    up_bias = [1 if "upsample.%d.bias" % b in shapes else 0 for b in range(n)]
    return dict(in_channels=in_ch, kernels=kernels, enc_convs=enc,
                mid_convs=mid, dec_convs=dec, norm=norm, upsample_bias=up_bias)


def check_layout(shapes, shape, what):
    """Compare the keys/shapes present with the layout the shape implies.
    Returns the expected layout; raises ConvertError naming the first problem."""
    want = layout(shape["in_channels"], shape["kernels"], shape["enc_convs"],
                  shape["mid_convs"], shape["dec_convs"], shape["norm"],
                  shape["upsample_bias"])
    want_d = dict(want)
    desc = ("in_channels %d, kernels %s, enc_convs %s, mid_convs %d, "
            "dec_convs %s, norm %s, upsample_bias %s"
            % (shape["in_channels"], shape["kernels"], shape["enc_convs"],
               shape["mid_convs"], shape["dec_convs"], shape["norm"],
               shape["upsample_bias"])).replace("\n", " ")
    for k in shapes:
        if k not in want_d:
            raise ConvertError("%s: unexpected key %r: not in the authors' UNet "
                               "layout for %s; an unsupported variant (e.g. an "
                               "instance/affine norm layer) or another model, "
                               "which semrep cannot use" % (what, k, desc))
    for k, _ in want:
        if k not in shapes:
            raise ConvertError("%s: missing key %r required by the layout for "
                               "%s; the state dict is incomplete or of another "
                               "model, save it again from the whole model"
                               % (what, k, desc))
    for k in shapes:
        if tuple(shapes[k]) != tuple(want_d[k]):
            raise ConvertError("%s: key %r has shape %s, expected %s for %s; "
                               "the weights are not of one authors' UNet"
                               % (what, k, _shape_str(shapes[k]),
                                  _shape_str(want_d[k]), desc))
    return want


def n_parameters(want):
    total = 0
    for k, s in want:
        if not k.endswith(".running_sd"):
            c = 1
            for d in s:
                c *= int(d)
            total += c
    return total


def checksum(named_arrays):
    """XXH3-64 (seed 0) over the variables in byte-wise sorted name order:
    name bytes, one 0 byte, values as float32 little-endian.  16 hex digits."""
    np = _import("numpy", "python3-numpy")
    xxhash = _import("xxhash", "python3-xxhash")
    h = xxhash.xxh3_64(seed=0)
    for name in sorted(named_arrays, key=lambda s: s.encode("utf-8")):
        h.update(name.encode("utf-8") + b"\0")
        h.update(np.ascontiguousarray(named_arrays[name], dtype="<f4").tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ to-nc
def load_state_dict(path):
    torch = _import("torch", "python3-torch")
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    try:
        obj = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unpickling failure
        msg = str(e).strip().splitlines()
        raise ConvertError("%s: torch.load failed: %s%s" % (
            path, type(e).__name__, (": " + msg[0]) if msg else ""))
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        for entry in ("state_dict", "model_state_dict"):
            if entry in obj and isinstance(obj[entry], dict):
                obj = obj[entry]
                break
        else:
            raise ConvertError("%s: a dict that is neither a state dict nor has a "
                               "'state_dict' or 'model_state_dict' entry (keys: %s)"
                               % (path, ", ".join(map(str, list(obj)[:8]))))
    if not isinstance(obj, dict) or not obj:
        raise ConvertError("%s: holds a %s, not a state dict" % (path, type(obj).__name__))
    state = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise ConvertError("%s: key %r is not a string" % (path, k))
        if not torch.is_tensor(v):
            raise ConvertError("%s: entry %r is a %s, not a tensor"
                               % (path, k, type(v).__name__))
        name = k[len("module."):] if k.startswith("module.") else k
        if name in state:
            raise ConvertError("%s: key %r appears both with and without the "
                               "'module.' prefix" % (path, name))
        state[name] = v
    return state


def write_atomically(out, write):
    """write(tmp) makes the file under OUT.tmp.PID, renamed to OUT when
    complete; a failure is one ConvertError line, and no partial file stays."""
    tmp = "%s.tmp.%d" % (out, os.getpid())
    try:
        write(tmp)
        os.replace(tmp, out)
    except ConvertError:
        raise
    except Exception as e:  # noqa: BLE001 - report I/O failures in one line
        raise ConvertError("%s: cannot write (%s: %s); check the folder exists "
                           "and is writable" % (out, type(e).__name__,
                                                str(e).splitlines()[0] if str(e) else ""))
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def to_nc(args):
    np = _import("numpy", "python3-numpy")
    torch = _import("torch", "python3-torch")
    netCDF4 = _import("netCDF4", "python3-netcdf4")
    _import("xxhash", "python3-xxhash")

    state = load_state_dict(args.model)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    shape = infer_shape(shapes, args.model)
    want = check_layout(shapes, shape, args.model)

    arrays, rounded = {}, []
    for k, v in state.items():
        if not v.is_floating_point():
            raise ConvertError("%s: key %r has dtype %s, expected a floating type"
                               % (args.model, k, v.dtype))
        if v.dtype != torch.float32:
            rounded.append(k)
        a = v.detach().to(torch.float32).contiguous().numpy()
        bad = ~np.isfinite(a)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ConvertError("%s: key %r has a non-finite value (%s at index %s "
                               "after conversion to float32, %d in all); convert "
                               "a checkpoint saved before training diverged"
                               % (args.model, k, a[first], first, int(bad.sum())))
        arrays[k] = a
    if rounded:
        print("%s: warning: %d tensors (first %r, %s) stored rounded to float32"
              % (PROG, len(rounded), rounded[0], state[rounded[0]].dtype),
              file=sys.stderr)

    source = args.model if args.source is None else args.source
    attrs = [
        ("format", FORMAT),
        ("format_version", np.array([FORMAT_VERSION], dtype=np.int32)),
        ("in_channels", np.array([shape["in_channels"]], dtype=np.int32)),
        ("kernels", np.array(shape["kernels"], dtype=np.int32)),
        ("enc_convs", np.array(shape["enc_convs"], dtype=np.int32)),
        ("mid_convs", np.array([shape["mid_convs"]], dtype=np.int32)),
        ("dec_convs", np.array(shape["dec_convs"], dtype=np.int32)),
        ("norm", shape["norm"]),
        ("output", args.output),
        ("upsample_bias", np.array(shape["upsample_bias"], dtype=np.int32)),
        ("parameters", np.int64(n_parameters(want))),
        ("checksum", checksum(arrays)),
    ]
    if source:
        attrs.append(("source", source))

    out = args.out

    def write_nc(tmp):
        ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        try:
            for name, value in attrs:
                if isinstance(value, str):
                    # bytes force NC_CHAR (a str with non-ASCII text would
                    # become NC_STRING)
                    value = value.replace("\0", " ").encode("utf-8")
                ds.setncattr(name, value)
            for k, a in arrays.items():
                dims = []
                for d in a.shape:
                    dim = "n%d" % d
                    if dim not in ds.dimensions:
                        ds.createDimension(dim, d)
                    dims.append(dim)
                var = ds.createVariable(k, "f4", tuple(dims))
                var[...] = a
        finally:
            ds.close()

    write_atomically(out, write_nc)
    print("%s: wrote %s: %d variables, %d parameters, in_channels %d, kernels %s, "
          "enc_convs %s, mid_convs %d, dec_convs %s, norm %s, output %s, "
          "upsample_bias %s, checksum %s"
          % (PROG, out, len(arrays), n_parameters(want), shape["in_channels"],
             shape["kernels"], shape["enc_convs"], shape["mid_convs"],
             shape["dec_convs"], shape["norm"], args.output,
             shape["upsample_bias"], dict(attrs)["checksum"]))
    return 0


# ------------------------------------------------------------------ to-pt
def _text_attr(ds, name, path):
    if name not in ds.ncattrs():
        raise ConvertError("%s: no global attribute %r; not a semrep model "
                           "checkpoint" % (path, name))
    v = ds.getncattr(name)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    if not isinstance(v, str):
        raise ConvertError("%s: attribute %r is not text" % (path, name))
    return v


def _int_attr(ds, name, path, length=None):
    np = _import("numpy", "python3-numpy")
    if name not in ds.ncattrs():
        raise ConvertError("%s: no global attribute %r" % (path, name))
    v = np.atleast_1d(ds.getncattr(name))
    if v.dtype.kind not in "iu":
        raise ConvertError("%s: attribute %r is not an integer" % (path, name))
    if length is not None and v.size != length:
        raise ConvertError("%s: attribute %r has %d values, expected %d"
                           % (path, name, v.size, length))
    return [int(x) for x in v]


def read_checkpoint(path):
    """Read and verify a semrep model checkpoint.
    Returns (ordered {name: float32 numpy array}, attributes dict)."""
    np = _import("numpy", "python3-numpy")
    netCDF4 = _import("netCDF4", "python3-netcdf4")
    _import("xxhash", "python3-xxhash")
    if not os.path.isfile(path):
        raise ConvertError("%s: no such file" % path)
    try:
        ds = netCDF4.Dataset(path, "r")
    except Exception as e:  # noqa: BLE001
        raise ConvertError("%s: cannot open as NetCDF (%s)" % (path, str(e).splitlines()[0]))
    try:
        ds.set_auto_maskandscale(False)
        fmt = _text_attr(ds, "format", path)
        if fmt != FORMAT:
            raise ConvertError("%s: format is %r, expected %r" % (path, fmt, FORMAT))
        ver = _int_attr(ds, "format_version", path, 1)[0]
        if ver != FORMAT_VERSION:
            raise ConvertError("%s: format_version %d, this converter reads %d"
                               % (path, ver, FORMAT_VERSION))
        kernels = _int_attr(ds, "kernels", path)
        n = len(kernels) - 1
        if n < 1:
            raise ConvertError("%s: attribute 'kernels' needs at least 2 values" % path)
        shape = dict(in_channels=_int_attr(ds, "in_channels", path, 1)[0],
                     kernels=kernels,
                     enc_convs=_int_attr(ds, "enc_convs", path, n),
                     mid_convs=_int_attr(ds, "mid_convs", path, 1)[0],
                     dec_convs=_int_attr(ds, "dec_convs", path, n),
                     norm=_text_attr(ds, "norm", path),
                     upsample_bias=_int_attr(ds, "upsample_bias", path, n))
        output = _text_attr(ds, "output", path)
        if shape["norm"] not in ("layer", "batch"):
            raise ConvertError("%s: norm is %r, expected layer or batch" % (path, shape["norm"]))
        if output not in ("clean", "residual"):
            raise ConvertError("%s: output is %r, expected clean or residual" % (path, output))
        if min(kernels + [shape["in_channels"], shape["mid_convs"]]
               + shape["enc_convs"] + shape["dec_convs"]) < 1:
            raise ConvertError("%s: a shape attribute is < 1" % path)
        want_sum = _text_attr(ds, "checksum", path)

        shapes = {k: tuple(v.shape) for k, v in ds.variables.items()}
        want = check_layout(shapes, shape, path)
        params = _int_attr(ds, "parameters", path, 1)[0]
        if params != n_parameters(want):
            raise ConvertError("%s: attribute parameters = %d, the layout has %d"
                               % (path, params, n_parameters(want)))
        arrays = {}
        for k, v in ds.variables.items():
            if v.dtype != np.float32:
                raise ConvertError("%s: variable %r is %s, expected float32"
                                   % (path, k, v.dtype))
            a = np.ascontiguousarray(v[...], dtype=np.float32)
            if not np.isfinite(a).all():
                raise ConvertError("%s: variable %r has a non-finite value" % (path, k))
            arrays[k] = a
        attrs = dict(shape, output=output, parameters=params, checksum=want_sum)
    finally:
        ds.close()
    got = checksum(arrays)
    if got != want_sum:
        raise ConvertError("%s: checksum mismatch (attribute %s, values give %s); "
                           "the file is corrupt or was edited, re-convert it"
                           % (path, want_sum, got))
    return arrays, attrs


def to_pt(args):
    torch = _import("torch", "python3-torch")
    arrays, attrs = read_checkpoint(args.nc)
    from collections import OrderedDict
    state = OrderedDict((k, torch.from_numpy(a.copy())) for k, a in arrays.items())
    out = args.out
    write_atomically(out, lambda tmp: torch.save(state, tmp))
    print("%s: wrote %s: %d tensors, %d parameters; the .pt does not record "
          "norm = %s, output = %s" % (PROG, out, len(state), attrs["parameters"],
                                      attrs["norm"], attrs["output"]))
    return 0


# ------------------------------------------------------------------ main
def main(argv=None):
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a blind-UNet checkpoint between a PyTorch state "
                    "dict (.pt) and semrep's NetCDF model checkpoint.")
    sub = ap.add_subparsers(dest="command", metavar="{to-nc,to-pt}")
    sub.required = True
    p = sub.add_parser("to-nc", help="PyTorch .pt -> semrep NetCDF checkpoint")
    p.add_argument("model", metavar="MODEL.pt")
    p.add_argument("out", metavar="OUT.nc")
    p.add_argument("--output", required=True, choices=("clean", "residual"),
                   help="what the network outputs: the clean image, or the "
                        "noise (residual: x_hat = y - f(y))")
    p.add_argument("--source", default=None,
                   help="text for the 'source' attribute (default: MODEL.pt "
                        "as given; '' omits it)")
    p = sub.add_parser("to-pt", help="semrep NetCDF checkpoint -> PyTorch .pt")
    p.add_argument("nc", metavar="IN.nc")
    p.add_argument("out", metavar="OUT.pt")
    args = ap.parse_args(argv)
    try:
        return to_nc(args) if args.command == "to-nc" else to_pt(args)
    except ConvertError as e:
        msg = " ".join(str(e).split("\n"))
        print("%s: error: %s" % (PROG, msg), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
