"""uuid4_strings answers what str(uuid.uuid4()) does: version 4, RFC 4122 variant, canonical text; the
time-ordered ones are version 7 and sort by their creation millisecond."""

from __future__ import annotations

import time
import uuid

from services.common.ids import uuid4_strings, uuid7_string, uuid7_strings


def test_they_are_distinct_canonical_version_4_uuids() -> None:
    ids = uuid4_strings(2000)
    assert len(ids) == len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert uuid4_strings(0) == [] and len(uuid4_strings(1)) == 1


def test_time_ordered_ids_are_version_7_and_sort_by_their_millisecond() -> None:
    earlier = uuid7_strings(3)
    time.sleep(0.002)
    later = uuid7_string()
    for text in (*earlier, later):
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, text)
        assert abs(int(text.replace("-", "")[:12], 16) - time.time() * 1000) < 5_000  # Unix milliseconds
    assert len(set(earlier)) == 3 and max(earlier) < later
