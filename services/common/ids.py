"""UUIDs as text, many at a time, from one `os.urandom` call and without a `uuid.UUID` object per id
(a bulk trigger makes thousands a call): random ones (version 4, what `str(uuid.uuid4())` answers),
and time-ordered ones (version 7, RFC 9562: 48 bits of Unix milliseconds, then random bits) for the
ids of rows written in creation order — a new id lands at the end of its index instead of at a random
page, which is most of what an insert into a large table costs."""

from __future__ import annotations

import os
import time


_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))  # byte 6: version 4
_VERSION_7 = bytes((byte & 0x0F) | 0x70 for byte in range(256))  # byte 6: version 7
_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))  # byte 8: variant 10xx (RFC 4122)


def uuid4_strings(count: int) -> list[str]:
    """`count` random UUIDs, each formatted like `str(uuid.uuid4())` (version 4, RFC 4122 variant)."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    return _formatted(raw, count)


def uuid7_strings(count: int) -> list[str]:
    """`count` time-ordered UUIDs (version 7) of this millisecond, formatted like `str(uuid.uuid4())`."""
    raw = bytearray(os.urandom(16 * count))
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    for start in range(6):
        raw[start::16] = stamp[start:start + 1] * count
    raw[6::16] = raw[6::16].translate(_VERSION_7)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    return _formatted(raw, count)


def uuid7_string() -> str:
    return uuid7_strings(1)[0]


def _formatted(raw: bytearray, count: int) -> list[str]:
    text = raw.hex()
    return [f"{text[i:i + 8]}-{text[i + 8:i + 12]}-{text[i + 12:i + 16]}-{text[i + 16:i + 20]}-{text[i + 20:i + 32]}"
            for i in range(0, 32 * count, 32)]
