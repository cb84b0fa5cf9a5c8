"""Regenerate the monitoring unit: prometheus/rules/{recording,alerts}.yml and grafana/dashboards/*.json.

    python -m monitoring            # rewrite the committed files
    python -m monitoring --out DIR  # write DIR/prometheus/rules/*.yml and DIR/grafana/dashboards/*.json instead
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import ROOT, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="directory to write into (default: the repository)")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
