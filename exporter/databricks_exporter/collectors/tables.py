"""Delta tables: size, files, and when each was last written, OPTIMIZEd and VACUUMed, for the tables the
configuration names (one by one, or whole schemas through SHOW TABLES), with each table's freshness SLO."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable

from .. import metrics as m
from ..config import option_value
from ..sources.errors import StatementRejected
from ..sources.sql import describe
from ..cycle import Cycle
from .base import NameFilter, register
from .system_tables import SystemTableCollector, amount, utc

log = logging.getLogger(__name__)

PART = r"[A-Za-z0-9_][A-Za-z0-9_\-]*"
TABLE_NAME = re.compile(rf"^{PART}\.{PART}\.{PART}$")
SCHEMA_NAME = re.compile(rf"^{PART}\.{PART}$")
# Commits that maintain a table without changing its data: they do not make it fresher.
MAINTENANCE = {"OPTIMIZE", "VACUUM START", "VACUUM END", "SET TBLPROPERTIES", "UNSET TBLPROPERTIES", "ANALYZE",
               "REORG", "ADD CONSTRAINT", "DROP CONSTRAINT", "CHANGE COLUMN", "ADD COLUMNS", "RENAME COLUMN",
               "UPGRADE PROTOCOL", "FSCK", "SET TABLE COMMENT", "CLONE"}


@dataclass(frozen=True)
class WatchedSchema:
    name: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_staleness: float | None = None


def quote(name: str) -> str:
    """catalog.schema.table with every part in backticks (names may hold hyphens)."""
    return ".".join(f"`{part}`" for part in name.split("."))


def _entry(raw: Any, allowed: set[str], where: str, error: Callable[[str, str], Exception]) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"expected a mapping with {', '.join(sorted(allowed))}, got {raw!r}", where)
    for key in raw:
        if key not in allowed:
            raise error(f"unknown key (allowed: {', '.join(sorted(allowed))})", f"{where}.{key}")
    if raw.get("max_staleness") is not None:
        raw = {**raw, "max_staleness": _typed(raw, "max_staleness", "duration", where, error, positive=True)}
    return raw


def _typed(raw: dict, key: str, kind: str, where: str, error, positive: bool = False) -> Any:
    try:
        return option_value(raw[key], kind, positive)
    except (TypeError, ValueError) as exc:
        raise error(str(exc), f"{where}.{key}") from None


@register
class TablesCollector(SystemTableCollector):
    name = "tables"
    # Freshness SLOs are hours; a table's numbers change with its writes.
    default_interval = 5 * 60.0
    options = {
        **SystemTableCollector.options,
        "tables": ("mapping", {}),        # catalog.schema.table -> {max_staleness}
        "schemas": ("mapping", {}),       # catalog.schema -> {include, exclude, max_staleness}
        "history_limit": ("int", 50),     # DESCRIBE HISTORY ... LIMIT: the newest commits are enough
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id); USE CATALOG, USE SCHEMA and SELECT on the tables "
                  "(DESCRIBE DETAIL and DESCRIBE HISTORY), and on the schemas listed with SHOW TABLES")

    @classmethod
    def validate_options(cls, options: dict, error: Callable[[str, str], Exception]) -> None:
        """Names are catalog.schema.table (or catalog.schema), staleness a duration; typed in place."""
        tables = {}
        for name, raw in options["tables"].items():
            where = f"tables[{name}]"
            if not TABLE_NAME.match(name):
                raise error(f"expected a full table name catalog.schema.table, got {name!r}", where)
            tables[name.lower()] = _entry(raw, {"max_staleness"}, where, error).get("max_staleness")
        options["tables"] = tables
        schemas = []
        for name, raw in options["schemas"].items():
            where = f"schemas[{name}]"
            if not SCHEMA_NAME.match(name):
                raise error(f"expected a schema name catalog.schema, got {name!r}", where)
            raw = _entry(raw, {"include", "exclude", "max_staleness"}, where, error)
            include, exclude = (tuple(_typed(raw, key, "regex_list", where, error)) if raw.get(key) else ()
                                for key in ("include", "exclude"))
            schemas.append(WatchedSchema(name.lower(), include, exclude, raw.get("max_staleness")))
        options["schemas"] = schemas
        if not 1 <= options["history_limit"] <= 1000:
            raise error(f"must be from 1 to 1000, got {options['history_limit']}", "history_limit")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        options = self.settings.options
        self.explicit: dict[str, float | None] = options["tables"]
        self.schemas: list[WatchedSchema] = options["schemas"]
        self._failing: set[str] = set()       # tables whose failure was logged; logged again once they recover

    def collect(self, cycle: Cycle, state: dict) -> None:
        if self.explicit or self.schemas:      # nothing configured: nothing to read, and no warehouse to wake
            super().collect(cycle, state)

    check_statement = None       # check_query describes the configured tables themselves

    def check_query(self) -> str:
        cycle = Cycle(self.workspace.workspace_id)
        self.refresh(cycle, {})
        described = len(cycle.gauges.get(m.TABLE_FILES, {}))
        failed = sorted(values[1] for _, values, _ in cycle.increments)
        return f"described {described} tables on warehouse {self.sql.warehouse_id}" + \
            (f"; could not describe {', '.join(failed)}" if failed else "")

    # -- the statements

    @staticmethod
    def show_tables_statement(schema: str) -> str:
        return f"SHOW TABLES IN {quote(schema)}"

    @staticmethod
    def detail_statement(table: str) -> str:
        return f"DESCRIBE DETAIL {quote(table)}"

    def history_statement(self, table: str) -> str:
        return f"DESCRIBE HISTORY {quote(table)} LIMIT {self.settings.options['history_limit']}"

    # -- the cycle

    def watched(self) -> dict[str, float | None]:
        """Every table to describe, with its maximum staleness: the schemas' tables, then the named ones (whose
        own settings win)."""
        out: dict[str, float | None] = {}
        for schema in self.schemas:
            keep = NameFilter(list(schema.include), list(schema.exclude))
            for row in self.query(self.show_tables_statement(schema.name)):
                table = row.get("tableName")
                if isinstance(table, str) and table and not _truthy(row.get("isTemporary")) and keep(table.lower()):
                    out[f"{schema.name}.{table.lower()}"] = schema.max_staleness
        out.update(self.explicit)
        return out

    def refresh(self, cycle: Cycle, state: dict) -> None:
        known: dict[str, dict] = state.setdefault("tables", {})
        watched = self.watched()
        for name in [n for n in known if n not in watched]:
            del known[name]
        for name, max_staleness in sorted(watched.items()):
            # A malformed answer skips (and counts) this table only, like a refused statement.
            with cycle.item(f"table {name}"):
                seen = self.describe_or_count(cycle, name, known.get(name, {}))
                if seen is None:
                    continue
                known[name] = seen
                cycle.gauge(m.TABLE_SIZE, seen["size_bytes"], table=name)
                cycle.gauge(m.TABLE_FILES, seen["files"], table=name)
                cycle.gauge(m.TABLE_LAST_MODIFIED, seen.get("last_write"), table=name)
                cycle.gauge(m.TABLE_LAST_OPTIMIZE, seen.get("last_optimize"), table=name)
                cycle.gauge(m.TABLE_LAST_VACUUM, seen.get("last_vacuum"), table=name)
                cycle.gauge(m.TABLE_FRESHNESS_SLO, max_staleness, table=name)

    def describe_or_count(self, cycle: Cycle, name: str, previous: dict) -> dict | None:
        """What describe() saw, or None when the warehouse refused to describe the table (counted, and logged
        once until it can be read again). Other failures (network, warehouse) fail the cycle."""
        try:
            seen = self.describe(name, previous)
        except StatementRejected as exc:    # this table's own trouble; other failures fail the cycle
            cycle.inc(m.TABLE_DESCRIBE_ERRORS, table=name)
            if name not in self._failing:
                self._failing.add(name)
                log.warning("cannot describe table %s (%s); its metrics are absent until it can be read",
                            name, describe(exc), extra={"collector": self.name})
            return None
        if name in self._failing:
            self._failing.discard(name)
            log.info("table %s can be described again", name, extra={"collector": self.name})
        return seen

    def describe(self, name: str, previous: dict) -> dict:
        """DESCRIBE DETAIL every cycle (size and files, cheap); DESCRIBE HISTORY only when the table has a commit
        since last time (lastModified moved), since the history is the long read."""
        detail = self.query(self.detail_statement(name))[0]
        modified = utc(detail["lastModified"]).timestamp() if detail.get("lastModified") is not None else None
        seen = {"size_bytes": amount(detail["sizeInBytes"]), "files": amount(detail["numFiles"]), "commit": modified}
        if previous.get("commit") == modified:
            return {**previous, **seen}
        commits = [(utc(row["timestamp"]).timestamp(), str(row["operation"] or "").upper())
                   for row in self.query(self.history_statement(name))]

        def newest(match: Callable[[str], bool], key: str) -> float | None:
            found = [ts for ts, operation in commits if match(operation)]
            # Older than the history read: the value of an earlier read, else the oldest commit read (at least
            # that old), or nothing when the history holds no such operation at all.
            return max(found) if found else previous.get(key)

        seen["last_write"] = newest(lambda op: op not in MAINTENANCE, "last_write")
        if seen["last_write"] is None and commits:
            seen["last_write"] = min(ts for ts, _ in commits)
        seen["last_optimize"] = newest(lambda op: op == "OPTIMIZE", "last_optimize")
        seen["last_vacuum"] = newest(lambda op: op == "VACUUM END", "last_vacuum")
        return seen


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")
