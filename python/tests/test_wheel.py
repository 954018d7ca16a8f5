"""The built wheels (make wheel, then KPO_REAPER_WHEEL_DIR=bin/wheel):
metadata and platform tags, RECORD, the binary inside, a reproducible
rebuild and an install into a fresh venv with pip --no-index."""

import base64
import hashlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import unittest
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import build_wheel  # noqa: E402

WHEEL_DIR = os.environ.get("KPO_REAPER_WHEEL_DIR", "")
# ELF e_machine of each wheel's architecture.
ELF_MACHINE = {"x86_64": 62, "aarch64": 183}
HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine())


def wheels():
    return sorted(Path(WHEEL_DIR).glob("*.whl"))


def arch_of(path):
    m = re.search(r"-py3-none-manylinux_2_17_(\w+?)\.", path.name)
    return m.group(1) if m else None


@unittest.skipUnless(WHEEL_DIR, "KPO_REAPER_WHEEL_DIR is not set: run `make test-wheel`, which builds the wheels")
class WheelTest(unittest.TestCase):
    def test_one_wheel_per_architecture(self):
        self.assertEqual(sorted(arch_of(w) for w in wheels()), ["aarch64", "x86_64"], wheels())

    def test_metadata_and_tags(self):
        for w in wheels():
            arch = arch_of(w)
            with zipfile.ZipFile(w) as z:
                names = z.namelist()
                info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/WHEEL"))
                version = info[len("kpo_reaper_airflow-"):-len(".dist-info")]
                self.assertEqual(w.name, f"kpo_reaper_airflow-{version}-py3-none-manylinux_2_17_{arch}."
                                         f"manylinux2014_{arch}.musllinux_1_1_{arch}.whl")
                meta = z.read(f"{info}/METADATA").decode()
                self.assertIn("\nName: kpo-reaper-airflow\n", meta)
                self.assertIn(f"\nVersion: {version}\n", meta)
                self.assertIn('Requires-Dist: apache-airflow>=2.5; extra == "airflow"', meta)
                wheel = z.read(f"{info}/WHEEL").decode()
                self.assertIn("Root-Is-Purelib: false\n", wheel)
                self.assertEqual(re.findall(r"^Tag: (.*)$", wheel, re.M),
                                 [f"py3-none-manylinux_2_17_{arch}", f"py3-none-manylinux2014_{arch}",
                                  f"py3-none-musllinux_1_1_{arch}"])
                self.assertIn("kpo_reaper_airflow/operator.py", names)

    def test_record_lists_every_file_with_its_hash(self):
        for w in wheels():
            with zipfile.ZipFile(w) as z:
                record = next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
                rows = [r.split(",") for r in z.read(record).decode().splitlines()]
                self.assertEqual(sorted(r[0] for r in rows), sorted(z.namelist()))
                for name, digest, size in rows:
                    if name == record:
                        self.assertEqual((digest, size), ("", ""))
                        continue
                    data = z.read(name)
                    want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                    self.assertEqual((digest, int(size)), ("sha256=" + want, len(data)), name)

    def test_binary_is_executable_for_its_architecture(self):
        for w in wheels():
            with zipfile.ZipFile(w) as z:
                zi = z.getinfo("kpo_reaper_airflow/bin/kpo-reaper")
                self.assertEqual((zi.external_attr >> 16) & 0o777, 0o755)
                head = z.read(zi)[:20]
                self.assertEqual(head[:4], b"\x7fELF")
                self.assertEqual(int.from_bytes(head[18:20], "little"), ELF_MACHINE[arch_of(w)], w.name)

    def test_rebuild_gives_the_same_bytes(self):
        # make wheel leaves the binaries next to the wheels.
        for w in wheels():
            arch = arch_of(w)
            goarch = {"x86_64": "amd64", "aarch64": "arm64"}[arch]
            binary = Path(WHEEL_DIR) / f"linux-{goarch}" / "kpo-reaper"
            version = w.name.split("-")[1]
            with zipfile.ZipFile(w) as z:
                stamp = z.infolist()[0].date_time
            epoch = int(__import__("calendar").timegm(stamp + (0, 0, 0)))
            with tempfile.TemporaryDirectory() as d:
                again = build_wheel.build(arch, binary, version, epoch, Path(d))
                self.assertEqual(again.name, w.name)
                self.assertEqual(again.read_bytes(), w.read_bytes(), f"{w.name} rebuilt differs")

    @unittest.skipUnless(HOST_ARCH, f"no wheel for this machine ({platform.machine()})")
    def test_installs_with_pip_no_index_and_the_binary_prints_its_version(self):
        w = next(w for w in wheels() if arch_of(w) == HOST_ARCH)
        with tempfile.TemporaryDirectory() as d:
            venv = Path(d) / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            py = venv / "bin" / "python"
            subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", str(w)], check=True)
            # Outside the source tree: the import must come from the venv.
            out = subprocess.run([str(py), "-c", "import kpo_reaper_airflow as k; print(k.binary_path()); "
                                                 "print(k.core.__file__)"],
                                 cwd=d, check=True, capture_output=True, text=True).stdout.split()
            self.assertTrue(out[0].startswith(str(venv)), out)
            self.assertTrue(out[1].startswith(str(venv)), out)
            version = subprocess.run([out[0], "version"], check=True, capture_output=True, text=True).stdout
            wheel_version = w.name.split("-")[1]
            self.assertRegex(version, "^kpo-reaper v" + re.escape(wheel_version.replace("+dirty", "-dirty")) + " ")


if __name__ == "__main__":
    unittest.main()
