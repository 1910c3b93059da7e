"""Random (version 4) UUIDs as text, many at a time: what `str(uuid.uuid4())` answers, from one
`os.urandom` call and without a `uuid.UUID` object per id (a bulk trigger makes thousands a call)."""

from __future__ import annotations

import os


_VERSION_4 = bytes((byte & 0x0F) | 0x40 for byte in range(256))  # byte 6: version 4
_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))  # byte 8: variant 10xx (RFC 4122)


def uuid4_strings(count: int) -> list[str]:
    """`count` random UUIDs, each formatted like `str(uuid.uuid4())` (version 4, RFC 4122 variant)."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION_4)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    text = raw.hex()
    return [f"{text[i:i + 8]}-{text[i + 8:i + 12]}-{text[i + 12:i + 16]}-{text[i + 16:i + 20]}-{text[i + 20:i + 32]}"
            for i in range(0, 32 * count, 32)]
