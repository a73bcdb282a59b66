"""Reading the project's TOML files with errors that name the file and say what to do."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib


BOM = "\ufeff"  # some editors (Notepad) start UTF-8 files with it; TOML itself does not allow it


def loads(text: str, error: type[Exception], where: str) -> dict:
    """Parse TOML text (a leading UTF-8 BOM skipped). Bad syntax or nesting too deep for the parser (a
    100,000-deep array) raises error naming `where`."""
    try:
        return tomllib.loads(text.removeprefix(BOM))
    except tomllib.TOMLDecodeError as e:
        raise error(f"{where}: not valid TOML ({e}); fix the syntax there") from None
    except RecursionError:
        raise error(f"{where}: arrays or tables nested too deeply to read; flatten them") from None


def read(path: str | Path, error: type[Exception], not_found: str) -> dict:
    """Parse a TOML file. A missing file raises error("PATH: " + not_found); bad syntax raises
    error naming the file and the parser's line."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {not_found}") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory; give the path of a TOML file") from None
    except PermissionError:
        raise error(f"{path}: permission denied; make the file readable (chmod a+r) or copy it") from None
    except UnicodeDecodeError as e:
        raise error(f"{path}: not a text file ({e}); give a TOML file") from None
    return loads(text, error, str(path))
