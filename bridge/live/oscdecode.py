"""OSC datagrams decoded with bounds: the control server's parser for untrusted input.

python-osc's parser is not safe on hostile input (a negative bundle element size loops forever), so
every datagram is decoded here: each step consumes at least 4 bytes, sizes are checked against what is
left, nesting is bounded, and anything unexpected raises OscError (the datagram is counted as malformed).

    decode(datagram) -> [(address, [args...]), ...]     (OscError when it is not well-formed OSC)
"""

from __future__ import annotations

import struct

MAX_DATAGRAM = 8192  # bytes; a command is < 64, a full status request 20 (UDP payloads beyond are cut)
MAX_DEPTH = 4  # bundles within bundles / arrays within arrays
MAX_MESSAGES = 16  # messages per datagram (a bundle of a few commands at most)
_BUNDLE = b"#bundle\0"
_FIXED = {
    "i": (4, ">i"),
    "f": (4, ">f"),
    "c": (4, ">I"),
    "r": (4, ">I"),
    "m": (4, ">4s"),
    "h": (8, ">q"),
    "d": (8, ">d"),
    "t": (8, ">Q"),
}  # tag -> (bytes, struct format)
_CONST = {"T": True, "F": False, "N": None, "I": True}


class OscError(ValueError):
    """A datagram that is not well-formed OSC (the message says where it breaks)."""


def _string(data: bytes, i: int, what: str) -> tuple[str, int]:
    """OSC string at i: UTF-8, NUL-terminated, padded to a multiple of 4 -> (text, next index)."""
    end = data.find(b"\0", i)
    if end < 0:
        raise OscError(f"{what} at byte {i} has no terminating NUL")
    nxt = (end + 4) & ~3
    if nxt > len(data):
        raise OscError(f"{what} at byte {i} runs past the end")
    try:
        return data[i:end].decode("utf-8"), nxt
    except UnicodeDecodeError:
        raise OscError(f"{what} at byte {i} is not UTF-8") from None


def _args(data: bytes, tags: str, i: int) -> list:
    """The arguments of one message, from the type tags (after the comma) at data[i:]."""
    out: list = []
    stack = [out]
    for tag in tags:
        if tag in _FIXED:
            size, fmt = _FIXED[tag]
            if i + size > len(data):
                raise OscError(f"argument {tag!r} at byte {i} runs past the end")
            val = struct.unpack_from(fmt, data, i)[0]
            i += size
        elif tag in "sS":
            val, i = _string(data, i, "string argument")
        elif tag == "b":
            if i + 4 > len(data):
                raise OscError(f"blob size at byte {i} runs past the end")
            n = struct.unpack_from(">i", data, i)[0]
            if n < 0 or i + 4 + n > len(data):
                raise OscError(f"blob at byte {i}: size {n} does not fit the datagram")
            val, i = data[i + 4 : i + 4 + n], i + 4 + ((n + 3) & ~3)
        elif tag in _CONST:
            val = _CONST[tag]
        elif tag == "[":
            if len(stack) > MAX_DEPTH:
                raise OscError(f"arrays nested deeper than {MAX_DEPTH}")
            stack[-1].append([])
            stack.append(stack[-1][-1])
            continue
        elif tag == "]":
            if len(stack) == 1:
                raise OscError("']' without '[' in the type tags")
            stack.pop()
            continue
        else:
            raise OscError(f"unknown type tag {tag!r}")
        stack[-1].append(val)
    if len(stack) != 1:
        raise OscError("'[' without ']' in the type tags")
    if i != len(data):
        raise OscError(f"{len(data) - i} bytes after the last argument")
    return out


def _message(data: bytes) -> tuple[str, list]:
    address, i = _string(data, 0, "address")
    if not address.startswith("/"):
        raise OscError(f"address {address[:40]!r} does not start with '/'")
    if i == len(data):
        return address, []  # no type tags: no arguments (older senders)
    tags, i = _string(data, i, "type tags")
    if not tags.startswith(","):
        raise OscError(f"type tags {tags[:40]!r} do not start with ','")
    return address, _args(data, tags[1:], i)


def decode(data: bytes, depth: int = 0, out: list | None = None) -> list[tuple[str, list]]:
    """One datagram -> [(address, args)], bundles flattened in order. Raises OscError."""
    out = [] if out is None else out
    if len(data) % 4 or not data:
        raise OscError(f"{len(data)} bytes: an OSC packet is a non-empty multiple of 4 bytes")
    if not data.startswith(_BUNDLE):
        if len(out) >= MAX_MESSAGES:
            raise OscError(f"more than {MAX_MESSAGES} messages in one datagram")
        out.append(_message(data))
        return out
    if depth >= MAX_DEPTH:
        raise OscError(f"bundles nested deeper than {MAX_DEPTH}")
    if len(data) < 16:
        raise OscError("bundle shorter than its header and time tag")
    i = 16  # "#bundle\0" + 8-byte time tag (ignored: every command acts at once)
    while i < len(data):
        if i + 4 > len(data):
            raise OscError(f"bundle element size at byte {i} runs past the end")
        n = struct.unpack_from(">i", data, i)[0]
        if n <= 0 or n % 4 or i + 4 + n > len(data):
            raise OscError(
                f"bundle element at byte {i}: size {n} (needs a positive multiple of 4 within the {len(data)} bytes)"
            )
        decode(data[i + 4 : i + 4 + n], depth + 1, out)
        i += 4 + n
    return out
