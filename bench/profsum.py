"""Summarizes py-spy raw (collapsed-stack) profiles: `python -m bench.profsum FILE [N]`.

Prints the N hottest functions by own time (leaf frames) and by inclusive time."""

from __future__ import annotations

import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def summarize(path: str, top: int = 15) -> str:
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [_name(f) for f in stack.split(";")]
            # py-spy's first frame is the thread ("process 123:\"python -m ...\"" / thread id): skip non-code
            code = [f for f in frames if "(" in f]
            if not code:
                continue
            own[code[-1]] += samples
            for frame in set(code):
                inclusive[frame] += samples
    out = [f"{path}: {total} samples"]
    out.append("  own time:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    out.append("  inclusive:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 15))
