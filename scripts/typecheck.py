"""Type-check the runtime (synthmatch.bridge) with mypy, on a machine without a GPU.

    python scripts/typecheck.py            the whole runtime, then the TensorRT backend as TensorRT-RTX
    python scripts/typecheck.py FILE ...   just these files (each run twice, as below)

The runtime is checked as installed (synthmatch/bridge, through a view of symlinks: mypy cannot derive
pyproject's package-dir mapping), with the configuration in pyproject.toml. The TensorRT backend is
checked against both flavours' signatures:
TensorRT 10: tensorrt-stubs (install with `pip install --no-deps tensorrt-stubs`: their declared
dependency is the full TensorRT runtime). The published stubs (10.8 to 10.13) are generated with two
kinds of syntax errors (a parameter named `in`, a keyword; one parameter without a default after
defaulted ones) and a module-level `bool` (trt.bool) that shadows the builtin in every annotation.
TensorRT-RTX: no stubs are published, so they are generated here with mypy's stubgen from the installed
tensorrt_rtx (pip install tensorrt-rtx-cu12; its bindings carry pybind11 signatures), with the same
`bool` repair. Both go to a temporary directory put first on MYPYPATH. mypy runs twice: over the runtime
with CHECK_RTX false (the shared code's `trt` is TensorRT 10), then over bridge/engines/tensorrt*.py with it
true (TensorRT-RTX). Exit status: the first failing mypy's, or 3 when mypy, the stubs or tensorrt_rtx are
missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB_FILES = ("tensorrt/__init__.pyi", "tensorrt_bindings/__init__.pyi", "tensorrt_bindings/tensorrt.pyi")


def find_stubs() -> Path | None:
    """site-packages directory holding tensorrt-stubs' .pyi files, or None."""
    spec = importlib.util.find_spec("tensorrt_stubs")
    if spec is None or not spec.submodule_search_locations:
        return None
    site = Path(list(spec.submodule_search_locations)[0]).parent
    return site if all((site / f).is_file() for f in STUB_FILES) else None


def repair(text: str) -> str:
    text = re.sub(r"\bin: ", "in_: ", text)  # `def f(self, in: list[...], out: ...)`
    # add_scale_nd's channel_axis (int in tensorrt-stubs, typing.SupportsInt from stubgen) lacks its default
    text = re.sub(
        r"channel_axis: ((?:typing\.Supports)?[Ii]nt)\) -> IScaleLayer", r"channel_axis: \1 = ...) -> IScaleLayer", text
    )
    if re.search(r"^bool: DataType", text, re.M):
        # the module defines `bool` (trt.bool, a DataType) and so shadows the builtin in every annotation
        lines = ["import builtins"]
        for line in text.splitlines():
            if not line.startswith("bool:"):
                line = re.sub(r"(?<![\w.`])bool\b(?!\s*[:=`])", "builtins.bool", line)
            lines.append(line)
        text = "\n".join(lines) + "\n"
    return text


def prepare(dest: Path) -> Path:
    site = find_stubs()
    if site is None:
        raise FileNotFoundError("tensorrt-stubs is not installed (pip install --no-deps tensorrt-stubs)")
    for f in STUB_FILES:
        out = dest / f
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(repair((site / f).read_text()))
    prepare_rtx(dest)
    return dest


def prepare_rtx(dest: Path) -> None:
    """Stubs for tensorrt_rtx: stubgen over the installed tensorrt_rtx_bindings (a pybind11 module), plus
    a tensorrt_rtx package that re-exports it as the real one does."""
    if importlib.util.find_spec("tensorrt_rtx_bindings") is None:
        raise FileNotFoundError("tensorrt_rtx is not installed (pip install tensorrt-rtx-cu12)")
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mypy.stubgen import main; main(sys.argv[1:])",
            "-p",
            "tensorrt_rtx_bindings",
            "-o",
            str(dest),
        ],
        capture_output=True,
        text=True,
    )
    gen = dest / "tensorrt_rtx_bindings" / "tensorrt_rtx.pyi"
    if r.returncode != 0 or not gen.is_file():
        raise FileNotFoundError(f"stubgen could not read tensorrt_rtx_bindings: {r.stdout}{r.stderr}")
    # pybind11's buffer protocol is invisible to stubgen; the real IHostMemory has it (memoryview(plan))
    text = repair(gen.read_text()).replace(
        "class IHostMemory:\n", "class IHostMemory:\n    def __buffer__(self, flags: int, /) -> memoryview: ...\n", 1
    )
    gen.write_text(text)
    pkg = dest / "tensorrt_rtx" / "__init__.pyi"
    pkg.parent.mkdir(parents=True, exist_ok=True)
    pkg.write_text("from tensorrt_rtx_bindings.tensorrt_rtx import *\n__version__: str\n")


def package_view(dest: Path) -> Path:
    """dest/synthmatch/{bridge,training} -> the repository's folders (symlinks): the installed layout,
    which mypy cannot derive from pyproject's package-dir mapping. Returns the directory for MYPYPATH."""
    pkg = dest / "view" / "synthmatch"
    pkg.mkdir(parents=True)
    for name in ("bridge", "training", "configs", "models"):
        (pkg / name).symlink_to(ROOT / name, target_is_directory=True)
    return pkg.parent


def mypy(view: Path, env: dict, switch: str, targets: list[str]) -> int:
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--explicit-package-bases"]
    cmd += [f"{switch}=CHECK_RTX", "--cache-dir", str(ROOT / ".mypy_cache"), *targets]
    return subprocess.run(cmd, cwd=view, env=env).returncode  # not ROOT: its bridge/ is no top-level package


def main(argv: list[str]) -> int:
    if importlib.util.find_spec("mypy") is None:
        print("mypy is not installed (pip install mypy)", file=sys.stderr)
        return 3
    with tempfile.TemporaryDirectory() as tmp:
        try:
            stubs = prepare(Path(tmp))
        except FileNotFoundError as e:
            print(e, file=sys.stderr)
            return 3
        view = package_view(Path(tmp))
        env = {**os.environ, "MYPYPATH": f"{stubs}{os.pathsep}{view}"}
        files = [str(view / "synthmatch" / Path(f).resolve().relative_to(ROOT)) for f in argv]  # as installed
        engines = view / "synthmatch" / "bridge" / "engines"
        rtx_files = files or [str(engines / "tensorrt.py"), str(engines / "tensorrt_build.py")]
        print("mypy, the runtime (TensorRT code as TensorRT 10):", flush=True)
        rc = mypy(view, env, "--always-false", files or ["-p", "synthmatch.bridge"])
        if rc:
            return rc
        print("mypy, the TensorRT backend as TensorRT-RTX:", flush=True)
        return mypy(view, env, "--always-true", rtx_files)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
