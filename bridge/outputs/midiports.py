"""MIDI port plumbing shared by the CC sink and the MIDI trigger: API choice, port lookup, JACK liveness.

python-rtmidi is used directly for transport (mido only encodes messages): it lets us name the JACK/ALSA
client, open virtual ports, and - crucially - decide what happens to a client whose JACK server died.

JACK server death, measured with jackd2 1.9.21 and the libjack bundled in the python-rtmidi 1.5.8 wheel:
- sending on a client whose server died does not raise (messages go into a ring buffer nobody reads), and
  its get_ports() returns a stale list, so death is detected here by `jack_server_alive()` and, for a
  server restarted between two checks, by `jack_server_id()` changing;
- once any new client of the same libjack is created after the server restarts, libjack frees the dead
  clients ("Jack server was closed but clients are still allocated, cleanup..."), and calling
  close_port()/delete() on such an rtmidi object afterwards can segfault the process.
So `retire(port, server_dead=True)` never touches a dead-server object again: it keeps one extra
reference forever (a few hundred bytes per server restart) and the OS reclaims it at exit.
The wheel bundles its own libjack, separate from the one PortAudio loads: rtmidi clients and PortAudio's
client are cleaned up independently. Under PipeWire the bundled libjack cannot reach pipewire-jack; use
api="alsa" there (PipeWire exposes the same ports over ALSA sequencer).
"""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path

import rtmidi

from synthmatch.bridge.core.names import pick

API_IDS = {
    "jack": rtmidi.API_UNIX_JACK,
    "alsa": rtmidi.API_LINUX_ALSA,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "winmm": rtmidi.API_WINDOWS_MM,
}
APIS = ("auto", "jack", "alsa", "coremidi", "winmm")
CLIENT_NAME = "synthmatch"


class MidiPortError(RuntimeError):
    """A MIDI port could not be found or opened; the message lists the candidates."""


def jack_server_name() -> str:
    """The server JACK clients connect to: $JACK_DEFAULT_SERVER, else "default"."""
    return os.environ.get("JACK_DEFAULT_SERVER") or "default"


def jack_socket_path(name: str | None = None) -> Path:
    """jackd2's request socket on Linux: /dev/shm/jack_<server>_<uid>_0."""
    return Path("/dev/shm") / f"jack_{name or jack_server_name()}_{os.getuid()}_0"


def jack_server_alive(name: str | None = None) -> bool | None:
    """True/False for a jackd2 server, None when no jackd2 socket exists (no server, or pipewire-jack).

    Connects to the server's request socket and hangs up without a request: ~0.1 ms, creates no JACK
    client (nothing flickers in patchbays) and jackd logs nothing. A socket left by a killed server
    refuses the connection -> False.
    """
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):  # Windows: cannot tell
        return None
    path = jack_socket_path(name)
    if not path.exists():
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def jack_server_id(name: str | None = None) -> tuple[int, int] | None:
    """Identity of the running jackd2 instance (its socket's inode and ctime), None without one.

    A restarted server re-creates the socket, so a changed id means every client of the old instance
    is dead even if a server answers again by the time we look.
    """
    if not hasattr(os, "getuid"):
        return None
    try:
        st = jack_socket_path(name).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_ctime_ns)


def compiled_apis() -> list[str]:
    """The APIs this python-rtmidi build has, as "jack"/"alsa" (the PyPI wheel has both on Linux)."""
    ids = set(rtmidi.get_compiled_api())
    return [name for name, api in API_IDS.items() if api in ids]


def resolve_api(api: str) -> str:
    """ "auto" -> "jack" when a JACK server answers and rtmidi has JACK, else the platform's own API
    (alsa on Linux, coremidi on macOS, winmm on Windows)."""
    if api not in APIS:
        raise MidiPortError(f"unknown MIDI api {api!r}: use one of {', '.join(APIS)}")
    if api != "auto":
        if api not in compiled_apis():
            raise MidiPortError(f"python-rtmidi was built without {api}; available: {compiled_apis()}")
        return api
    have = compiled_apis()
    if "jack" in have and jack_server_alive():
        return "jack"
    native = [a for a in ("alsa", "coremidi", "winmm") if a in have]
    if not native:
        raise MidiPortError(f"no usable MIDI API: python-rtmidi has {have or 'none'} and no JACK server answers")
    return native[0]


def new_client(kind: str, api: str, client_name: str = CLIENT_NAME) -> rtmidi.MidiOut | rtmidi.MidiIn:
    """A fresh rtmidi client ("out" or "in"). Raises MidiPortError if the API's server is unreachable."""
    cls = rtmidi.MidiOut if kind == "out" else rtmidi.MidiIn
    try:
        return cls(API_IDS[api], client_name)
    except rtmidi.SystemError as e:  # JACK server not running / no /dev/snd/seq
        raise MidiPortError(f"cannot create a MIDI {api} client: {e}") from e


def pick_port(names: list[str], wanted: str, what: str = "port") -> int:
    """Index of the MIDI port `wanted` means (core.names.pick: exact name, else a unique case-insensitive
    substring). Missing or ambiguous -> MidiPortError listing the candidates."""
    return pick(names, wanted, f"MIDI {what}", MidiPortError, hint="see `synthmatch devices`")


_RETIRED: list[object] = []  # dead-server rtmidi objects, kept alive on purpose (module docstring)


def retire(client: rtmidi.MidiOut | rtmidi.MidiIn | None, server_dead: bool) -> None:
    """Close a client. If its JACK server died, never touch it again (see the module docstring)."""
    if client is None:
        return
    if server_dead:
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(client))  # never deallocated -> no destructor run
        _RETIRED.append(client)
        return
    if isinstance(client, rtmidi.MidiIn):
        client.cancel_callback()
    client.close_port()
    client.delete()


def list_ports(api: str, kind: str) -> list[str]:
    """Port names of one API ("out": ports we can send to, "in": ports we can receive from).

    Raises MidiPortError when the API is unusable (no JACK server, no ALSA sequencer).
    """
    client = new_client(kind, api, CLIENT_NAME + "-list")
    try:
        return list(client.get_ports())
    finally:
        client.delete()
