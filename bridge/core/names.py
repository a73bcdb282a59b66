"""One name picker for audio devices and MIDI ports: what the user typed -> the index of one name.

    idx = pick(port_names, "massive", "MIDI output port (jack)", MidiPortError, hint="see `synthmatch devices`")

An exact name wins (the first, if a system lists it twice); else the one name that contains it,
case-insensitively. None or several -> one error line listing the candidates and what to do, raised
as `error(message)`: an exception class, or any callable making one (e.g. to prefix the config key).
"""

from __future__ import annotations

from typing import Callable, Sequence

from synthmatch.bridge.core.errors import UsageError


def pick(
    names: Sequence[str],
    wanted: str,
    what: str,
    error: Callable[[str], Exception] = UsageError,
    labels: Sequence[str] | None = None,
    hint: str = "",
) -> int:
    """Index into names of the one `wanted` means. what: the kind of thing, for messages ("input device");
    labels: how each name is listed in messages (default: the name quoted); hint: appended when nothing
    matches (where to see the names)."""
    if wanted in names:
        return list(names).index(wanted)
    hits = [i for i, n in enumerate(names) if wanted.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    shown = list(labels) if labels is not None else [repr(n) for n in names]
    if not hits:
        listing = ", ".join(shown) or "none"
        raise error(f"no {what} matches {wanted!r}; available: {listing}{f'; {hint}' if hint else ''}")
    listing = ", ".join(shown[i] for i in hits)
    raise error(f"{what} {wanted!r} is ambiguous, it matches {listing}; give more of the name, or all of it")
