"""Regenerate the monitoring unit: prometheus/rules/{recording,alerts}.yml and grafana/dashboards/*.json.

    python -m monitoring            # rewrite the committed files, and the Kubernetes objects made from them
    python -m monitoring --out DIR  # write DIR/prometheus/rules/*.yml and DIR/grafana/dashboards/*.json instead
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from . import ROOT, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitoring", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="directory to write into (default: the repository)")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)
    if args.out == ROOT:    # deploy/kubernetes embeds the rules and dashboards just written
        kubernetes = runpy.run_path(str(ROOT / "deploy" / "kubernetes" / "generate.py"))
        for path in kubernetes["write"](kubernetes["DEFAULT_OUT"]):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
