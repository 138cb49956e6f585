"""An installed package (a wheel, as a Ray job's workers may get it) has every file the
source tree has: each non-Python file under rlaif_ray/ is named by pyproject's
package-data."""

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_file_is_in_the_package_data():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())[
        "tool"]["setuptools"]["package-data"]["rlaif_ray"]
    package = ROOT / "rlaif_ray"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc")]
    assert data  # the templates, prompts, corpus and default config
    # setuptools' `*` stops at a slash, as fnmatch's does not: compare segment counts too.
    left_out = [f for f in data if not any(
        fnmatch.fnmatch(f, g) and f.count("/") == g.count("/") for g in globs)]
    assert not left_out, f"add to [tool.setuptools.package-data] in pyproject.toml: {left_out}"
