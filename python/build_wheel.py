#!/usr/bin/env python3
"""Builds the kpo-reaper-airflow platform wheels with the standard library.

A wheel is a zip: the package, the binary, and a .dist-info folder with
METADATA, WHEEL and RECORD (PEP 427, PEP 491). The same inputs give the same
bytes: entries in a fixed order, times from --source-date-epoch, fixed
modes, fixed compression.

    python3 python/build_wheel.py --out bin/wheel --version v0.1.0 \\
        --source-date-epoch 1700000000 \\
        --binary x86_64=bin/wheel/linux-amd64/kpo-reaper \\
        --binary aarch64=bin/wheel/linux-arm64/kpo-reaper
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import time
import zipfile
from pathlib import Path

DIST = "kpo-reaper-airflow"
PKG = "kpo_reaper_airflow"
HERE = Path(__file__).resolve().parent
SOURCES = ["__init__.py", "core.py", "dag.py", "operator.py"]

# A static Go binary needs no libc: the oldest manylinux tag pip knows by
# name (manylinux2014 = manylinux_2_17) and musllinux both fit.
ARCHES = ("x86_64", "aarch64")


def platform_tags(arch: str) -> list[str]:
    return [f"manylinux_2_17_{arch}", f"manylinux2014_{arch}", f"musllinux_1_1_{arch}"]


def wheel_version(v: str) -> str:
    """The chart's appVersion as a PEP 440 version: v0.1.0 -> 0.1.0,
    v0.1.0-dirty -> 0.1.0+dirty."""
    v = v.strip()
    if v.startswith("v"):
        v = v[1:]
    v = re.sub(r"-dirty$", "+dirty", v)
    if not re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[a-z0-9.]+)?", v):
        raise SystemExit(f"--version {v!r}: not a PEP 440 version (want e.g. v0.1.0)")
    return v


def metadata(version: str) -> str:
    readme = (HERE / "README.md").read_text()
    return "\n".join([
        "Metadata-Version: 2.1",
        f"Name: {DIST}",
        f"Version: {version}",
        "Summary: kpo-reaper as an Airflow task: deletes zombie KubernetesPodOperator pods",
        "Home-page: https://github.com/kpo-reaper/kpo-reaper",
        "Requires-Python: >=3.8",
        "Provides-Extra: airflow",
        'Requires-Dist: apache-airflow>=2.5; extra == "airflow"',
        "Classifier: Framework :: Apache Airflow",
        "Classifier: Operating System :: POSIX :: Linux",
        "Description-Content-Type: text/markdown",
        "",
        readme,
    ])


def wheel_file(arch: str) -> str:
    lines = ["Wheel-Version: 1.0", "Generator: kpo-reaper python/build_wheel.py", "Root-Is-Purelib: false"]
    lines += [f"Tag: py3-none-{t}" for t in platform_tags(arch)]
    return "\n".join(lines) + "\n"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build(arch: str, binary: Path, version: str, epoch: int, out: Path) -> Path:
    if arch not in ARCHES:
        raise SystemExit(f"--binary {arch}=...: the architecture must be one of {', '.join(ARCHES)}")
    info = f"{PKG}-{version}.dist-info"
    files: list[tuple[str, bytes, int]] = []
    for name in SOURCES:
        files.append((f"{PKG}/{name}", (HERE / PKG / name).read_bytes(), 0o644))
    files.append((f"{PKG}/bin/kpo-reaper", binary.read_bytes(), 0o755))
    files.append((f"{info}/METADATA", metadata(version).encode(), 0o644))
    files.append((f"{info}/WHEEL", wheel_file(arch).encode(), 0o644))
    record = "".join(f"{n},{record_hash(d)},{len(d)}\n" for n, d, _ in files) + f"{info}/RECORD,,\n"
    files.append((f"{info}/RECORD", record.encode(), 0o644))

    # Zip times are local wall-clock fields from 1980 on; UTC keeps them
    # the same on every machine.
    stamp = time.gmtime(max(epoch, 315532800))[:6]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{PKG}-{version}-py3-none-{'.'.join(platform_tags(arch))}.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, data, mode in files:
            zi = zipfile.ZipInfo(name, date_time=stamp)
            zi.create_system = 3  # unix, so that the mode below is read
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data, compresslevel=9)
    return path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--version", required=True)
    p.add_argument("--source-date-epoch", type=int, default=0)
    p.add_argument("--binary", action="append", required=True, metavar="ARCH=PATH")
    a = p.parse_args(argv)
    version = wheel_version(a.version)
    for spec in a.binary:
        arch, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--binary {spec!r}: use ARCH=PATH, e.g. x86_64=bin/kpo-reaper")
        print(build(arch, Path(path), version, a.source_date_epoch, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
