"""uuid4_strings answers what str(uuid.uuid4()) does: version 4, RFC 4122 variant, canonical text."""

from __future__ import annotations

import uuid

from services.common.ids import uuid4_strings


def test_they_are_distinct_canonical_version_4_uuids() -> None:
    ids = uuid4_strings(2000)
    assert len(ids) == len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert uuid4_strings(0) == [] and len(uuid4_strings(1)) == 1
