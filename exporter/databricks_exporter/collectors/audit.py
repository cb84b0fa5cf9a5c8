"""Security signals from the audit log: failed logins, token, permission and group changes, admin settings edits and
IP access denials, counted once each by event_id as they arrive in system.access.audit, by service, action and
status class; never by user or address. Idle (and saying so) when the credential may not read the table."""

from __future__ import annotations

import logging
from typing import Callable

from .. import metrics as m
from ..sources.errors import StatementRejected
from ..sources.sql import literal
from ..cycle import Cycle
from .base import register
from .system_tables import IncrementalTableCollector, sql_timestamp, status_class, utc

log = logging.getLogger(__name__)

# The watched actions (service_name/action_name), the only values the labels can take. Extend with audit.actions.
ACTIONS = (
    "accounts/login", "accounts/tokenLogin", "accounts/IpAccessDenied",
    "tokens/generateToken", "tokens/revokeToken",
    "permissions/changePermissions",
    "groups/addPrincipalToGroup", "groups/removePrincipalFromGroup", "groups/createGroup", "groups/removeGroup",
    "ipAccessLists/createIpAccessList", "ipAccessLists/updateIpAccessList", "ipAccessLists/deleteIpAccessList",
    "workspace/workspaceConfEdit",
)
MAX_ACTIONS = 100


@register
class AuditCollector(IncrementalTableCollector):
    name = "audit"
    # The audit log arrives minutes late; reading it every five minutes keeps alerts timely without a busy warehouse.
    default_interval = 5 * 60.0
    id_column, time_column = "event_id", "event_time"
    options = {
        **IncrementalTableCollector.options,
        "actions": ("str_list", list(ACTIONS)),
        # Groups whose membership grants admin rights: changes to them are counted apart.
        "admin_groups": ("str_list", ["admins"]),
        # Events that appear in the table up to this long after later ones are still counted (audit lags minutes).
        "max_delay": ("duration", 30 * 60.0),
    }
    permission = ("CAN USE on the SQL warehouse (warehouse_id) and SELECT on system.access.audit (granted by an "
                  "account admin; without it the collector stays idle and databricks_audit_log_readable is 0)")

    @classmethod
    def validate_options(cls, options: dict, error: Callable[[str, str], Exception]) -> None:
        actions = options["actions"]
        for action in actions:
            service, _, name = action.partition("/")
            if not service or not name or "/" in name or not all(c.isalnum() or c in "_-" for c in service + name):
                raise error(f"expected service_name/action_name such as accounts/login, got {action!r}", "actions")
        if len(actions) > MAX_ACTIONS:
            raise error(f"at most {MAX_ACTIONS} actions (each is a label value), got {len(actions)}", "actions")

    def check_statement(self) -> str:
        return "SELECT 1 FROM system.access.audit LIMIT 1"

    def rows_statement(self, since: float) -> str:
        actions = ", ".join(literal(a) for a in self.settings.options["actions"])
        return ("SELECT event_id, event_time, service_name, action_name, response.status_code AS status_code,\n"
                "  request_params['targetGroupName'] AS target_group\n"
                "FROM system.access.audit\n"
                f"WHERE workspace_id = {literal(self.workspace.workspace_id)}\n"
                f"  AND event_time >= {sql_timestamp(since)}\n"
                f"  AND concat(service_name, '/', action_name) IN ({actions})")

    def refresh(self, cycle: Cycle, state: dict) -> None:
        if state.get("readable") is not True:
            state["readable"] = self._readable()
        cycle.gauge(m.AUDIT_READABLE, 1 if state["readable"] else 0)
        if not state["readable"]:
            return
        # The signals alerts watch exist from the start, so that their first event is an increase.
        cycle.start_at_zero(m.AUDIT_EVENTS, service_name="accounts", action_name="login", status_class="4xx")
        for action in self.settings.options["actions"]:
            service, _, name = action.partition("/")
            if service == "groups":
                cycle.start_at_zero(m.AUDIT_ADMIN_GROUP_CHANGES, action_name=name)
        try:
            newest = self.count_new_rows(cycle, state)
        except StatementRejected:
            state["readable"] = False       # the grant was revoked: idle again (next cycle), and say so
            raise
        if newest is not None:
            state["latest"] = max(state.get("latest", 0.0), newest)
        if state.get("latest"):
            cycle.gauge(m.AUDIT_LATEST, state["latest"])

    def _readable(self) -> bool:
        try:
            self.query(self.check_statement())
            return True
        except StatementRejected:
            log.warning("system.access.audit cannot be read with this credential; the audit collector stays idle "
                        "(grant SELECT on system.access.audit to enable it)", extra={"collector": self.name})
            return False

    def count_row(self, cycle: Cycle, row: dict) -> None:
        utc(row["event_time"])
        outcome = status_class(row.get("status_code"))
        cycle.inc(m.AUDIT_EVENTS, service_name=row["service_name"], action_name=row["action_name"],
                  status_class=outcome)
        if (row["service_name"] == "groups" and outcome == "2xx"
                and row.get("target_group") in self.settings.options["admin_groups"]):
            cycle.inc(m.AUDIT_ADMIN_GROUP_CHANGES, action_name=row["action_name"])

    def check_query(self) -> str:
        try:
            return super().check_query()
        except StatementRejected as exc:
            return f"cannot read system.access.audit ({str(exc)[:120]}): the audit collector stays idle"
