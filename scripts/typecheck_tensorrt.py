"""Type-check the TensorRT backend against the TensorRT 10 signatures, on a machine without TensorRT.

    python scripts/typecheck_tensorrt.py [FILE ...]     (default: bridge/engine_tensorrt.py)

Needs mypy and tensorrt-stubs (install the stubs with `pip install --no-deps tensorrt-stubs`: their
declared dependency is the full TensorRT runtime). The published stubs (10.8 to 10.13) are generated
with two kinds of syntax errors (a parameter named `in`, a keyword; one parameter without a default after
defaulted ones) and a module-level `bool` (trt.bool) that shadows the builtin in every annotation. This
script copies them to a temporary directory, repairs exactly those, and runs
mypy (configured in pyproject.toml) with that directory first on MYPYPATH. Exit status: mypy's, or 3
when mypy or the stubs are missing.
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
    text = text.replace("channel_axis: int) -> IScaleLayer", "channel_axis: int = ...) -> IScaleLayer")
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
    return dest


def main(argv: list[str]) -> int:
    files = argv or ["bridge/engine_tensorrt.py"]
    if importlib.util.find_spec("mypy") is None:
        print("mypy is not installed (pip install mypy)", file=sys.stderr)
        return 3
    with tempfile.TemporaryDirectory() as tmp:
        try:
            stubs = prepare(Path(tmp))
        except FileNotFoundError as e:
            print(e, file=sys.stderr)
            return 3
        env = {**os.environ, "MYPYPATH": str(stubs)}
        cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *files]
        return subprocess.run(cmd, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
