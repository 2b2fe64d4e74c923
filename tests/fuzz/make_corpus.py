#!/usr/bin/python3
"""Writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/),
a few small valid and broken files per reader, with the standard library and
ncgen (netcdf-bin). Run again only to change the corpus:

    tests/fuzz/make_corpus.py

The files are inputs as each target reads them (tests/fuzz/fuzz_*.c): the
IDX target's labels follow a "\\nLABELS\\n" separator, the NetCDF target's
first byte asks for labels when odd.
"""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
ROOT = os.path.dirname(os.path.dirname(HERE))


def put(reader, name, data):
    with open(os.path.join(CORPUS, reader, name), "wb") as f:
        f.write(data)


def png(width, height, colour, depth, rows, extra=b"", interlace=0):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    raw = b"".join(b"\0" + r for r in rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def pngs():
    grey = png(4, 3, 0, 8, [bytes([16 * i + j for j in range(4)]) for i in range(3)])
    put("png", "grey8.png", grey)
    put("png", "rgb16.png", png(2, 5, 2, 16, [bytes(range(12)) for _ in range(5)]))
    put("png", "grey1_wide.png", png(9, 2, 0, 1, [b"\xa5\x80"] * 2))
    palette = struct.pack(">I", 6) + b"PLTE" + b"\0\0\0\xff\x80\x10" + struct.pack(">I", zlib.crc32(b"PLTE\0\0\0\xff\x80\x10"))
    trns = struct.pack(">I", 1) + b"tRNS\x40" + struct.pack(">I", zlib.crc32(b"tRNS\x40"))
    put("png", "palette_trns.png", png(3, 3, 3, 8, [b"\0\1\0"] * 3, palette + trns))
    put("png", "rgba_interlaced.png", png(3, 3, 6, 8, [bytes(range(12))] * 3, interlace=1))
    put("png", "truncated.png", grey[:40])
    put("png", "bad_crc.png", grey[:29] + b"\0" + grey[30:])
    put("png", "not_png.png", b"GIF89a not a png")


def idx_images(count, rows, cols):
    return struct.pack(">IIII", 0x803, count, rows, cols) + bytes((7 * i) % 256 for i in range(count * rows * cols))


def idx():
    images = idx_images(3, 4, 5)
    labels = struct.pack(">II", 0x801, 3) + b"\0\2\1"
    put("idx", "plain.idx", images)
    put("idx", "labelled.idx", images + b"\nLABELS\n" + labels)
    put("idx", "gzipped.idx", gzip.compress(images, mtime=0) + b"\nLABELS\n" + gzip.compress(labels, mtime=0))
    put("idx", "truncated.idx", images[:30])
    put("idx", "wrong_magic.idx", struct.pack(">I", 0x801) + images[4:])
    put("idx", "label_count.idx", images + b"\nLABELS\n" + struct.pack(">II", 0x801, 4) + b"\0\1")
    put("idx", "gzip_truncated.idx", gzip.compress(images, mtime=0)[:20])


def ncgen(cdl, kind="nc4"):
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "x.cdl"), os.path.join(tmp, "x.nc")
        with open(src, "w") as f:
            f.write(cdl)
        subprocess.run(["ncgen", "-k", kind, "-o", out, src], check=True)
        with open(out, "rb") as f:
            return f.read()


def netcdf():
    values = ", ".join(str((13 * i) % 256) for i in range(2 * 3 * 4 * 5))
    grey = ("netcdf x { dimensions: image = 2; channel = 1; y = 4; x = 5;\n"
            "variables: ubyte images(image, channel, y, x); int labels(image);\n"
            "data: images = " + ", ".join(str((13 * i) % 256) for i in range(40)) + "; labels = 0, 3; }\n")
    rgb = ("netcdf x { dimensions: image = 2; channel = 3; y = 4; x = 5;\n"
           "variables: float images(image, channel, y, x);\n"
           "data: images = " + ", ".join(str(((13 * i) % 256) / 255) for i in range(120)) + "; }\n")
    bad = ("netcdf x { dimensions: image = 2; channel = 2; y = 4; x = 5;\n"
           "variables: ubyte images(image, channel, y, x); double labels(image);\n"
           "data: images = " + values[:200].rsplit(",", 1)[0] + "; labels = 0.5, 1; }\n")
    put("netcdf", "grey_labelled.nc", b"\1" + ncgen(grey))
    put("netcdf", "grey_classic.nc", b"\1" + ncgen(grey.replace("ubyte", "short"), "classic"))
    put("netcdf", "rgb_float.nc", b"\0" + ncgen(rgb))
    put("netcdf", "two_channels.nc", b"\1" + ncgen(bad))
    put("netcdf", "truncated.nc", b"\0" + ncgen(grey)[:600])
    # lengths past 2^32 (never written: small files) that an int would wrap to 1
    for dim, name in (("y", "huge_side.nc"), ("channel", "huge_channels.nc")):
        huge = ("netcdf x { dimensions: image = 2; channel = 1; y = 4; x = 1;\n"
                "variables: ubyte images(image, channel, y, x); }\n").replace(f" {dim} = ", f" {dim} = 4294967297LL; _{dim} = ")
        put("netcdf", name, b"\0" + ncgen(huge))


def checkpoint():
    with open(os.path.join(ROOT, "tests/fixtures/converted_tiny.nc"), "rb") as f:
        model = f.read()
    put("checkpoint", "converted_tiny.nc", model)
    put("checkpoint", "truncated.nc", model[:len(model) // 2])
    cdl = subprocess.run(["ncdump", os.path.join(ROOT, "tests/fixtures/converted_tiny.nc")], check=True,
                         capture_output=True, text=True).stdout
    put("checkpoint", "other_kernels.nc", ncgen(cdl.replace(':kernels = 4, 6, 8', ':kernels = 4, 6, 8, 9')))
    put("checkpoint", "cdf5.nc", ncgen(cdl, "cdf5"))


def confs():
    for name in ("tiny-test.conf", "fashion-mnist.conf", "paper-imagenet64.conf"):
        shutil.copy(os.path.join(ROOT, "conf", name), os.path.join(CORPUS, "conf", name))
    put("conf", "bad_types.conf", b'seed = "x";\nphi = { sigmas = [1, "a"]; draws = 1.5; };\nmodel = { kernels = [32, -64]; };\n')
    put("conf", "unknown_key.conf", b'phi = { sigma = [0.1]; };\ncluster = { k = [2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 9, 10, 11, 12]; };\n')
    put("conf", "syntax.conf", b'dataset = { limit = 4294967360; stride = 2L; \n')
    put("conf", "include.conf", b'@include "/nonexistent.conf"\nseed = 4294967295;\n')


def manifests():
    head = "# semrep-manifest 1\n# folder\t/data/pngs\n# max_pixels\t1048576\n"
    put("manifest", "unlabelled.tsv", (head + "# classes\nindex\tname\tbytes\tmtime\tclass\tverdict\n"
                                       "0\ta.png\t120\t1700000000\t-1\tok\n"
                                       "-\tb.png\t7\t1700000001\t-1\tnot a PNG file (bad signature)\n"
                                       "1\tc.png\t300\t1700000002\t-1\tok\n").encode())
    put("manifest", "labelled.tsv", (head + "# classes\tcat\tdog\nindex\tname\tbytes\tmtime\tclass\tverdict\n"
                                     "0\tcat/a.png\t120\t1700000000\t0\tok\n"
                                     "1\tdog/b.png\t130\t1700000001\t1\tok\n").encode())
    put("manifest", "class_out_of_range.tsv", (head + "# classes\tcat\nindex\tname\tbytes\tmtime\tclass\tverdict\n"
                                               "0\tcat/a.png\t120\t1700000000\t7\tok\n").encode())
    put("manifest", "damaged.tsv", (head + "# classes\nindex\tname\n0\ta.png\t12x\n").encode())
    put("manifest", "old_version.tsv", b"# semrep-manifest 0\n")


def main():
    for reader in ("png", "idx", "netcdf", "checkpoint", "conf", "manifest"):
        shutil.rmtree(os.path.join(CORPUS, reader), ignore_errors=True)
        os.makedirs(os.path.join(CORPUS, reader))
    pngs()
    idx()
    netcdf()
    checkpoint()
    confs()
    manifests()


if __name__ == "__main__":
    sys.exit(main())
