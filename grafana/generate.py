"""Regenerate the dashboards, and with them the rest of the monitoring unit: the same as `python -m monitoring`.

The dashboards' sources are in monitoring/dashboards/; see monitoring/__init__.py.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitoring.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
