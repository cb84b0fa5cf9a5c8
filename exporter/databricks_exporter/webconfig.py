"""--web.config.file in the Prometheus exporter-toolkit format: TLS (optionally requiring client certificates) and
basic auth users with bcrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import os
import ssl
import threading
from dataclasses import dataclass, field

from .config import Reader, read_yaml

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
                "TLS13": ssl.TLSVersion.TLSv1_3}


@dataclass
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)   # user -> bcrypt hash
    # bcrypt is deliberately slow (~100 ms); remember what was verified so a scrape every 15 s costs nothing.
    _verified: set[bytes] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorized(self, header: str | None) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(hashed + b"\0" + password.encode()).digest()
        with self._lock:
            if key in self._verified:
                return True
        import bcrypt

        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._verified.add(key)
        return True


def load_web_config(path: str | None) -> WebConfig:
    if not path:
        return WebConfig()
    base = os.path.dirname(os.path.abspath(path))
    top = Reader(path, "", read_yaml(path, "web configuration file"))
    config = WebConfig()

    tls = top.child("tls_server_config")
    cert, key = tls.get("cert_file", "str"), tls.get("key_file", "str")
    client_ca = tls.get("client_ca_file", "str")
    client_auth = tls.get("client_auth_type", "str", "NoClientCert")
    min_version = tls.get("min_version", "str", "TLS12")
    max_version = tls.get("max_version", "str", "TLS13")
    tls.finish()
    if cert or key:
        if not (cert and key):
            raise tls.error("cert_file and key_file go together", "cert_file" if not cert else "key_file")
        if client_auth not in CLIENT_AUTH:
            raise tls.error(f"must be one of {', '.join(CLIENT_AUTH)}", "client_auth_type")
        for key_name, version in (("min_version", min_version), ("max_version", max_version)):
            if version not in TLS_VERSIONS:
                raise tls.error(f"must be one of {', '.join(TLS_VERSIONS)}", key_name)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version, context.maximum_version = TLS_VERSIONS[min_version], TLS_VERSIONS[max_version]
        try:
            context.load_cert_chain(os.path.join(base, cert), os.path.join(base, key))
        except (OSError, ssl.SSLError) as exc:
            raise tls.error(f"cannot load the certificate and key: {exc}", "cert_file") from None
        context.verify_mode = CLIENT_AUTH[client_auth]
        if client_ca:
            try:
                context.load_verify_locations(os.path.join(base, client_ca))
            except (OSError, ssl.SSLError) as exc:
                raise tls.error(f"cannot load the client CA: {exc}", "client_ca_file") from None
        elif client_auth in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven"):
            raise tls.error(f"{client_auth} needs client_ca_file", "client_ca_file")
        config.ssl_context = context

    users = top.get("basic_auth_users", "dict", {})
    for user, hashed in users.items():
        if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise top.error(f"the password of {user!r} must be a bcrypt hash (htpasswd -nBC 10 USER)",
                            "basic_auth_users")
        config.users[user] = hashed.encode()
    top.finish()
    return config
