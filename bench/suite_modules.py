"""The test suite's slowest modules: per-module sums of a pytest JUnit file's test times.

``--durations`` lists single tests; where the suite spends its time is clearer per module.

    PYTEST_ADDOPTS="--junitxml=/tmp/j.xml" make test
    .venv/bin/python bench/suite_modules.py /tmp/j.xml --most 5
"""

from __future__ import annotations

import argparse
import collections
import xml.etree.ElementTree as ET


def module_of(classname: str) -> str:
    """``tests.model.test_x`` from a test's classname (which may end in a test class)."""
    parts = classname.split(".")
    return ".".join(parts[:-1]) if len(parts) > 1 and parts[-1][:1].isupper() else classname


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("junit", help="pytest --junitxml output")
    ap.add_argument("--most", type=int, default=5, help="how many modules to list")
    args = ap.parse_args()
    seconds: collections.Counter[str] = collections.Counter()
    for case in ET.parse(args.junit).iter("testcase"):
        seconds[module_of(case.get("classname", ""))] += float(case.get("time", 0))
    for module, total in seconds.most_common(args.most):
        print(f"{total:8.1f} s  {module}")
    print(f"{sum(seconds.values()):8.1f} s  in all test cases")


if __name__ == "__main__":
    main()
