"""PortAudio instance management for a daemon that must outlive its audio server.

PortAudio enumerates devices once per initialisation, so seeing a device come back needs a re-scan
(terminate + initialise). That is not possible once a JACK server died under an open stream
(measured with Debian libportaudio2 19.6 and jackd2 1.9.21):
- Pa_AbortStream / Pa_CloseStream on the dead stream block forever;
- Pa_Terminate aborts the whole process (pa_jack.c Terminate: assertion `err == 0').
So a stream lost that way is never touched again, and `fresh_instance()` loads a private copy of the
PortAudio library (a distinct dlopen handle = distinct globals) and initialises that one instead; the
old instance and its dead stream are kept referenced and abandoned (a few hundred kB per loss).
`safe_exit()` replaces sounddevice's atexit handler so a process never calls Pa_Terminate on an
instance whose server died.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("synthmatch.bridge")

_graveyard: list[object] = []  # abandoned streams and library handles: referenced forever, never used
_tainted = False  # the current instance lost a stream: it must never be terminated


def _loaded_library_path(sd) -> Path | None:
    """Absolute path of the PortAudio library this process loaded (Linux: from /proc/self/maps)."""
    name = Path(str(sd._libname)).name.split(".so")[0]
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(" ")[-1]
                if path.startswith("/") and Path(path).name.startswith(name):
                    return Path(path)
    except OSError:
        return None
    return None


_client_name: bytes | None = None  # kept alive: PortAudio stores the pointer


def _set_client_name(path: Path | None, name: str | None) -> None:
    """PaJack_SetClientName on the library at path (before its Pa_Initialize); ignored where absent."""
    global _client_name
    if path is None or name is None:
        return
    import ctypes

    try:
        fn = ctypes.CDLL(str(path)).PaJack_SetClientName
    except (OSError, AttributeError):
        return
    _client_name = name.encode()
    fn.argtypes = [ctypes.c_char_p]
    fn(_client_name)


def name_jack_client(sd, name: str) -> None:
    """Name this process's PortAudio JACK client (ports appear as NAME:in_1 ...) and re-scan.
    Only before any stream is opened."""
    global _jack_name
    _jack_name = name
    _set_client_name(_loaded_library_path(sd), name)
    rescan(sd)


_jack_name: str | None = None


def abandon(stream) -> None:
    """A stream that failed under us: keep it alive but never call into it again; mark the instance."""
    global _tainted
    if stream is not None:
        _graveyard.append(stream)
    _tainted = True


def rescan(sd) -> None:
    """Make PortAudio enumerate devices again: terminate/initialise when the instance is clean,
    else switch to a fresh instance (see the module docstring). No stream may be open."""
    global _tainted
    if not _tainted:
        sd._terminate()
        sd._initialize()
        return
    src = _loaded_library_path(sd)
    if src is None:  # not Linux or not found: the plain way is all there is
        log.warning("PortAudio library path unknown; re-initialising in place")
        _graveyard.append(sd._lib)
        sd._initialized = 0
        sd._initialize()
        _tainted = False
        return
    tmp = Path(tempfile.mkdtemp(prefix="synthmatch-pa-"))
    copy = tmp / f"libportaudio-{len(_graveyard)}.so"
    shutil.copy(src, copy)
    try:
        lib = sd._ffi.dlopen(str(copy))
        _set_client_name(copy, _jack_name)  # same path: the same handle as lib
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # the mapping stays valid after the file is gone
    _graveyard.append(sd._lib)
    sd._lib = lib
    sd._initialized = 0
    sd._initialize()
    _tainted = False
    log.info("PortAudio re-initialised in a fresh instance")


def _exit_handler(sd) -> None:
    if _tainted:
        return  # the server of this instance died: Pa_Terminate would abort the process
    sd._exit_handler()


def safe_exit(sd) -> None:
    """Replace sounddevice's atexit hook with one that skips Pa_Terminate on a tainted instance."""
    if getattr(sd, "_synthmatch_safe_exit", False):
        return
    atexit.unregister(sd._exit_handler)
    atexit.register(_exit_handler, sd)
    sd._synthmatch_safe_exit = True
