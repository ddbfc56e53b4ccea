"""Make Debian's gfal2 Python binding visible, as the distribution ``gfal2-python``, inside a virtual environment.

DIRAC 9.1 requires ``gfal2-python``. Its PyPI sdist does not build against Debian 12's gfal2 2.21.3, while
Debian's ``python3-gfal2`` package ships a working binding for Debian's own Python 3.11. This script, run with the
virtual environment's interpreter (which must be Debian's ``/usr/bin/python3``), symlinks that one extension module
into the environment and records it as an installed distribution so that pip's resolver accepts it.
"""

from __future__ import annotations

import pathlib
import sys
import sysconfig

DEBIAN_DIST_PACKAGES = pathlib.Path("/usr/lib/python3/dist-packages")
DISTRIBUTION_NAME = "gfal2_python"
DISTRIBUTION_VERSION = "1.12.0"  # the version Debian 12 ships as python3-gfal2


def main() -> int:
    if sys.prefix == sys.base_prefix:
        print("link_debian_gfal2: run me with the virtual environment's python", file=sys.stderr)
        return 2
    candidates = sorted(DEBIAN_DIST_PACKAGES.glob("gfal2.cpython-*.so"))
    if not candidates:
        print(f"link_debian_gfal2: no gfal2 binding in {DEBIAN_DIST_PACKAGES}: apt-get install python3-gfal2",
              file=sys.stderr)
        return 1
    site_packages = pathlib.Path(sysconfig.get_paths()["platlib"])
    link = site_packages / candidates[0].name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(candidates[0])
    dist_info = site_packages / f"{DISTRIBUTION_NAME}-{DISTRIBUTION_VERSION}.dist-info"
    dist_info.mkdir(exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: gfal2-python\nVersion: {DISTRIBUTION_VERSION}\n"
        "Summary: Debian python3-gfal2 binding, linked into this environment by KM3DIRAC's tools/link_debian_gfal2.py\n"
    )
    (dist_info / "INSTALLER").write_text("km3dirac-bootstrap\n")
    (dist_info / "RECORD").write_text(
        f"{link.name},,\n{dist_info.name}/METADATA,,\n{dist_info.name}/INSTALLER,,\n{dist_info.name}/RECORD,,\n"
    )
    import gfal2  # noqa: F401  (proves the binding loads in this interpreter)

    print(f"link_debian_gfal2: {link} -> {candidates[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
