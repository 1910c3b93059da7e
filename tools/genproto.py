"""Generate Python code and .pyi stubs from protos/ into the jobline/ package.

`python -m tools.genproto` writes the files; `--check` generates into a scratch
directory and exits non-zero when the committed code differs.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
PACKAGE = "jobline"


def _include_dirs() -> list[str]:
    """protoc's own well-known types and googleapis' google/api protos."""
    grpc_tools_protos = importlib.resources.files("grpc_tools") / "_proto"
    import google.api  # from googleapis-common-protos, which ships the .proto files

    googleapis_root = Path(google.api.__path__[0]).parent.parent
    return [str(PROTOS), str(grpc_tools_protos), str(googleapis_root)]


def generate(out: Path) -> None:
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = ["protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *sources]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    for directory in [out / PACKAGE, *(p for p in (out / PACKAGE).rglob("*") if p.is_dir())]:
        (directory / "__init__.py").touch()


def _differences(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    diffs = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    for name, sub in cmp.subdirs.items():
        diffs += [f"{name}/{d}" for d in _differences(a / name, b / name)]
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if regeneration changes anything")
    check = parser.parse_args().check
    with tempfile.TemporaryDirectory() as scratch:
        generate(Path(scratch))
        fresh, committed = Path(scratch) / PACKAGE, ROOT / PACKAGE
        if check:
            diffs = _differences(fresh, committed) if committed.exists() else ["jobline/ missing"]
            if diffs:
                sys.exit("generated code is stale, run `make proto`: " + ", ".join(diffs))
            print("generated code is up to date")
            return
        shutil.rmtree(committed, ignore_errors=True)
        shutil.copytree(fresh, committed)
        print(f"generated {PACKAGE}/ from {PROTOS.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
