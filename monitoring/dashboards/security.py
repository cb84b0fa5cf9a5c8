"""Security signals from the audit log: logins and failed logins, tokens created and revoked, permission and group
changes, changes to the admins outside the change window, workspace settings edits and IP access denials."""

from __future__ import annotations

from .common import BAD_IF_ANY, RATE, WS, new_dashboard, query, row, stat_panel, timeseries_panel

UID = "databricks-security"

AUDIT = "databricks_audit_events_total"
TOKENS_CREATED = 'service_name="tokens", action_name="generateToken"'
IP_DENIED = 'action_name="IpAccessDenied"'
ACCOUNTS = 'service_name="accounts"'
TOKENS = 'service_name="tokens"'
CHANGES = 'service_name=~"permissions|groups|workspace|ipAccessLists"'


def events(selector: str) -> str:
    return f"{AUDIT}{{{WS}, {selector}}}"


def build():
    return new_dashboard(UID, "Databricks security signals from system.access.audit (counted by action and status "
                              "class; never by user or address: the audit log itself says who).", [], [
        row("Now"),
        stat_panel("Failed logins (15m)", "short",
                   query(f"sum(workspace:databricks_audit_failed_logins:increase15m{{{WS}}})"),
                   decimals=0, thresholds=[(None, "green"), (20, "red")],
                   description="Over the threshold fires DatabricksFailedLoginBurst (critical)."),
        stat_panel("Admin group changes (15m)", "short",
                   query(f"sum(workspace:databricks_audit_admin_group_changes:increase15m{{{WS}}})"),
                   decimals=0, thresholds=BAD_IF_ANY,
                   description="Outside the change window, any fires DatabricksAdminPermissionChange."),
        stat_panel("Change window", "short", query("databricks:change_window:open or vector(0)"),
                   mappings={"1": ("open", "green"), "0": ("closed", "orange")},
                   description="monitoring/config.py CHANGE_WINDOW (UTC)."),
        stat_panel("Tokens created per hour", "short",
                   query(f"sum(rate({events(TOKENS_CREATED)}{RATE})) * 3600")),
        stat_panel("IP access denials per hour", "short",
                   query(f"sum(rate({events(IP_DENIED)}{RATE})) * 3600")),
        stat_panel("Audit log readable", "short", query(f"min(databricks_audit_log_readable{{{WS}}})"),
                   mappings={"1": ("yes", "green"), "0": ("no: grant SELECT", "red")}),
        row("Activity"),
        timeseries_panel("Logins by outcome", "short",
                         query(f'sum by (action_name, status_class) (rate({events(ACCOUNTS)}'
                               f"{RATE})) * 60", "{{action_name}} {{status_class}}"), w=12,
                         description="Per minute: login (users), tokenLogin (tokens and service principals)."),
        timeseries_panel("Permission, group and settings changes", "short",
                         query(f"sum by (service_name, action_name) (rate({events(CHANGES)}{RATE})) * 3600",
                               "{{service_name}}/{{action_name}}"), w=12,
                         description="Changes per hour."),
        timeseries_panel("Tokens created and revoked", "short",
                         query(f"sum by (action_name) (rate({events(TOKENS)}{RATE})) * 3600",
                               "{{action_name}}"), w=12, description="Per hour."),
        timeseries_panel("Audit feed", "s",
                         query(f"time() - databricks_audit_latest_event_timestamp_seconds{{{WS}}}", "age"), w=12,
                         description="How old the newest watched event the exporter has read is: the audit log "
                                     "lags minutes."),
    ])
