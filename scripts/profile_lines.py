"""Read a py-spy raw profile (``--format raw``, e.g. ``bench_stream.py --profile DIR`` writes
``DIR/worker.folded``) three ways: functions by self time, the callees of one function, or
the lines of one function by self time.

    .venv/bin/python scripts/profile_lines.py DIR/worker.folded
    .venv/bin/python scripts/profile_lines.py DIR/worker.folded --callees "Pipeline._score"
    .venv/bin/python scripts/profile_lines.py DIR/worker.folded --lines "Pipeline._intake"
"""

from __future__ import annotations

import argparse
from collections import Counter
from itertools import pairwise
from pathlib import Path


def stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames outermost first, sample count) per line of a collapsed-stack file."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def function(frame: str) -> str:
    """``func (path/to/mod.py:123)`` -> ``func (mod.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("folded", type=Path)
    parser.add_argument("--callees", help="where this function's time goes, by callee line")
    parser.add_argument("--lines", help="this function's self time by line")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    data = stacks(args.folded)
    total = sum(n for _f, n in data) or 1
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, n in data:
        if args.lines:
            if frames[-1].startswith(args.lines + " ("):
                own["line " + frames[-1].rsplit(":", 1)[-1].rstrip(")")] += n
        elif args.callees:
            for outer, inner in pairwise(frames):
                if outer.startswith(args.callees + " ("):
                    own[inner] += n
                    break
        else:
            own[function(frames[-1])] += n
            for f in {function(f) for f in frames}:
                incl[f] += n
    print(f"{total} samples")
    for key, n in own.most_common(args.top):
        extra = f" {100 * incl[key] / total:6.1f}%" if incl else ""
        print(f"{100 * n / total:6.1f}%{extra}  {key}")


if __name__ == "__main__":
    main()
