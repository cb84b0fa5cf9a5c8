"""Render the dashboards of grafana/dashboards_src/ to grafana/dashboards/<uid>.json, deterministically.

    python grafana/generate.py            # rewrite the committed JSON
    python grafana/generate.py --out DIR  # write elsewhere (the drift test compares the two)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dashboards_src import MODULES  # noqa: E402
from dashboards_src.common import render  # noqa: E402

DEFAULT_OUT = HERE / "dashboards"


def dashboards() -> dict[str, dict]:
    """uid -> the dashboard's JSON model."""
    return {module.UID: render(module.build()) for module in MODULES}


def serialize(model: dict) -> str:
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for uid, model in dashboards().items():
        path = out / f"{uid}.json"
        path.write_text(serialize(model), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="directory to write into")
    args = parser.parse_args(argv)
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
