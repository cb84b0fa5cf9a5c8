"""system.access.audit of the simulated workspace: logins, token and permission changes, group changes, workspace
settings edits and IP access denials from a handful of users and service principals, among everyday actions a
security watch ignores; each event visible one to four minutes after it happened (audit logs lag minutes).

Permission, group and settings changes happen in business hours (Monday to Friday, 08:00-18:00 UTC) only, as a
change process would have them; the `permission_change` scenario makes one outside that rhythm, and
`failed_login_burst` a password-spraying minute after minute (scenarios.py)."""

from __future__ import annotations

import datetime as dt
import json

from .common import HOUR_MS, stable_hex
from .streams import MINUTE_MS, MinuteStream, nested, rng_for, uuid_of

HISTORY_MS = 6 * HOUR_MS
USERS = ("ana.silva@example.com", "bo.chen@example.com", "carla.jones@example.com", "dev.patel@example.com",
         "eli.novak@example.com", "fatima.khan@example.com")
ADMINS = ("carla.jones@example.com", "gus.meyer@example.com")
SERVICE_PRINCIPALS = ("svc-automation@example.com", "svc-recsys@example.com")
OFFICE_IPS = ("10.20.1.15", "10.20.1.27", "10.20.3.4", "10.20.7.90")
USER_AGENTS = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)", "databricks-sdk-py/0.56.0", "Terraform/1.9.5")


class Event(dict):
    """One audit row in the making (service, action, status, who, from where, parameters)."""


def event(service: str, action: str, status: int, email: str, ip: str, **params) -> Event:
    return Event(service=service, action=action, status=status, email=email, ip=ip, params=params)


def business_hours(ms: int) -> bool:
    t = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return t.weekday() < 5 and 8 <= t.hour < 18


class AuditLog(MinuteStream):
    domain = "audit"

    def __init__(self, ws):
        super().__init__(ws, max(ws.world_start_ms, ws.now_ms() - HISTORY_MS))

    def baseline(self, start_ms: int) -> list[Event]:
        rng = rng_for(self.seed, "audit", start_ms)
        out = [event("accounts", "tokenLogin", 200, sp, "10.20.9.9", tokenId=stable_hex(sp, n=12))
               for sp in SERVICE_PRINCIPALS]
        for _ in range(3):              # everyday actions the security collector leaves alone
            out.append(event(rng.choice(("clusters", "jobs", "notebook", "sqlPermissions")),
                             rng.choice(("list", "get", "runNow", "attachNotebook")), 200, rng.choice(USERS),
                             rng.choice(OFFICE_IPS)))
        minute = start_ms // MINUTE_MS
        if rng.random() < 0.4:
            user = rng.choice(USERS)
            out.append(event("accounts", "login", 200, user, rng.choice(OFFICE_IPS), user=user))
        # The everyday background, on a rhythm so that every hour has some: a mistyped password every ten
        # minutes, a token made every half hour and one revoked every hour, a request from an address outside the
        # IP access list every twenty minutes, and the automation applying job permissions every half hour.
        if minute % 10 == 3:
            user = rng.choice(USERS)
            out.append(event("accounts", "login", 401, user, rng.choice(OFFICE_IPS), user=user))
        if minute % 30 == 11:
            out.append(event("tokens", "generateToken", 200, rng.choice(USERS), rng.choice(OFFICE_IPS),
                             lifetimeSeconds="7776000"))
        if minute % 60 == 41:
            out.append(event("tokens", "revokeToken", 200, rng.choice(USERS), rng.choice(OFFICE_IPS)))
        if minute % 20 == 7:
            out.append(event("accounts", "IpAccessDenied", 403, rng.choice(USERS), f"198.51.100.{rng.randrange(255)}",
                             path="/api/2.0/clusters/list"))
        if minute % 30 == 17:
            out.append(event("permissions", "changePermissions", 200, SERVICE_PRINCIPALS[0], "10.20.9.9",
                             objectType="jobs", objectId=str(rng.randrange(10**6))))
        if business_hours(start_ms):
            if rng.random() < 0.02:
                out.append(event("permissions", "changePermissions", 200, rng.choice(ADMINS), rng.choice(OFFICE_IPS),
                                 objectType="jobs", objectId=str(rng.randrange(10**6))))
            if rng.random() < 0.01:
                out.append(event("groups", "addPrincipalToGroup", 200, rng.choice(ADMINS), rng.choice(OFFICE_IPS),
                                 targetGroupName="data-eng", targetUserName=rng.choice(USERS)))
            if rng.random() < 0.005:
                out.append(event("workspace", "workspaceConfEdit", 200, rng.choice(ADMINS), rng.choice(OFFICE_IPS),
                                 workspaceConfKeys="enableTokensConfig"))
        return out

    def minute(self, start_ms: int) -> None:
        events = self.ws.scenarios.apply("audit_minute", start_ms, self.baseline(start_ms), start_ms)
        rng = rng_for(self.seed, "audit-times", start_ms)
        for i, e in enumerate(events):
            at = start_ms + rng.randrange(MINUTE_MS)
            visible = at + rng.randrange(1 * MINUTE_MS, 4 * MINUTE_MS)
            self.record(at, visible, e["service"], e["action"], str(e["status"]))
            self.emit("access_audit", self._row(e, at, visible, i))

    def _row(self, e: Event, at: int, visible: int, i: int) -> dict:
        params = {k: str(v) for k, v in e["params"].items()}
        failed = e["status"] >= 400
        return {
            "account_id": self.ws.account_id, "workspace_id": str(self.ws.workspace_id), "version": "2.0",
            "event_time": at, "event_date": at // 86_400_000, "source_ip_address": e["ip"],
            "user_agent": USER_AGENTS[i % len(USER_AGENTS)], "session_id": stable_hex(e["email"], at // HOUR_MS, n=24),
            "user_identity": json.dumps({"email": e["email"], "subject_name": None}),
            "service_name": e["service"], "action_name": e["action"], "request_id": uuid_of("audit-request", at, i),
            "request_params_k": list(params), "request_params_v": list(params.values()),
            "response": json.dumps({"status_code": e["status"],
                                  "error_message": "Invalid credentials" if failed else None, "result": None}),
            "audit_level": "WORKSPACE_LEVEL", "event_id": uuid_of(self.seed, "audit", at, i),
            "identity_metadata": json.dumps({"run_by": None, "run_as": None}), "_visible_at": visible}

    def truth(self, since_ms: float, now_ms: int) -> dict:
        return {"audit": {"visible": nested(self.counts(since_ms, now_ms)),
                          "all": nested(self.counts(since_ms, now_ms, visible=False))}}
