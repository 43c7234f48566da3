"""The experiments' one entry point.

    python -m benchmarks list [--topic TOPIC]       the experiments: name, topic, description
    python -m benchmarks run NAME [--step S] [...]  run one (``run NAME --help``: its declaration and options)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = __doc__.split("\n\n", 1)[1]


def list_experiments(topic: str | None = None) -> str:
    """The declared experiments as a text table, grouped by topic in the order of :data:`harness.TOPICS`."""
    from benchmarks import experiments  # noqa: F401 - registers them
    from benchmarks import harness as H

    if topic is not None and topic not in H.TOPICS:
        raise SystemExit(f"unknown topic {topic!r}; choose from: {', '.join(H.TOPICS)}")
    width = max(len(n) for n in H.EXPERIMENTS)
    lines = []
    for t in H.TOPICS:
        if topic is not None and t != topic:
            continue
        names = [e for e in H.EXPERIMENTS.values() if e.topic == t]
        if names:
            lines.append(f"{t}:")
            lines += [f"  {e.name:<{width}}  {e.description}" for e in names]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "list":
        topic = None
        if rest[:1] == ["--topic"] and len(rest) == 2:
            topic = rest[1]
        elif rest:
            raise SystemExit("usage: python -m benchmarks list [--topic TOPIC]")
        print(list_experiments(topic))
        return 0
    if command != "run" or not rest or rest[0].startswith("-"):
        raise SystemExit(USAGE)

    from benchmarks import experiments  # noqa: F401 - registers them
    from benchmarks import harness as H

    try:
        exp = H.find_experiment(rest[0])
    except H.UnknownExperimentError as err:
        raise SystemExit(str(err)) from None
    if {"-h", "--help"} & set(rest[1:]):
        print(exp.summary() + "\n")
    H.run_experiment(exp.name, rest[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
