"""`python -m fer_core env`: the versions of Python and the packages, the device and its
memory, whether torchvision's ops load and whether faces can be found in photos. Exit 2 with
one line per problem on stderr, each naming the fix, when something is missing or broken.

It imports nothing that could be broken before it looks (`fer_core.environment`), so it answers
where every other command fails at start."""

import argparse
import sys

from ..environment import problems, report
from .common import EXIT_ERROR


def add_arguments(p: argparse.ArgumentParser) -> None:
    """It takes none."""


def run(args) -> int:
    facts = report()
    width = max(len(fact.name) for fact in facts) + 2
    for fact in facts:
        print(f"{fact.name + ':':<{width}}{fact.value}")
    for problem in problems(facts):
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_ERROR if problems(facts) else 0
