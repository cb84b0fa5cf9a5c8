"""The secured endpoint: TLS and bcrypt basic auth in the exporter-toolkit format, scraped by the real Prometheus."""

from __future__ import annotations

import base64
import ssl
import subprocess
import urllib.request

import bcrypt
import pytest
import yaml

from conftest import fast_config, run_serve, wait_for

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery staple"


def make_certificates(directory) -> dict:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command line."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return {"ca": str(directory / "ca.crt")}


def get(url: str, ca: str, password: str | None) -> int:
    request = urllib.request.Request(url)
    if password is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode())
    context = ssl.create_default_context(cafile=ca)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.fixture
def secured(tmp_path, exporter_factory):
    certs = make_certificates(tmp_path)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web_config = tmp_path / "web.yml"
    web_config.write_text(yaml.safe_dump({
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key"},
        "basic_auth_users": {"prometheus": hashed}}))
    exporter = exporter_factory(fast_config())
    exporter.scheme = "https"
    exporter.start("--web.config.file", str(web_config))
    return exporter, certs["ca"]


def test_tls_and_basic_auth_are_enforced(secured):
    exporter, ca = secured
    url = f"https://127.0.0.1:{exporter.port}/metrics"
    assert get(url, ca, PASSWORD) == 200
    assert get(url, ca, "wrong password") == 401
    assert get(url, ca, None) == 401
    assert get(f"https://127.0.0.1:{exporter.port}/", ca, None) == 401
    assert get(f"https://127.0.0.1:{exporter.port}/healthz", ca, None) == 200
    with pytest.raises(OSError):   # plain HTTP to a TLS port gets nowhere
        urllib.request.urlopen(f"http://127.0.0.1:{exporter.port}/metrics", timeout=5).read()
    assert PASSWORD not in exporter.log()


def test_real_prometheus_scrapes_over_tls_with_basic_auth(secured, prometheus_factory, tmp_path):
    exporter, ca = secured
    target = f"127.0.0.1:{exporter.port}"
    good = prometheus_factory([target], scheme="https", tls_config={"ca_file": ca},
                              basic_auth={"username": "prometheus", "password": PASSWORD})
    wait_for(lambda: good.query('up{job="databricks"} == 1'), 30, what="a scrape over TLS with basic auth")
    assert wait_for(lambda: good.query("count(databricks_job_info)"), 20, what="job series")
    good.stop()
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    from conftest import Prometheus
    bad = Prometheus(bad_dir, [target], scheme="https", tls_config={"ca_file": ca},
                     basic_auth={"username": "prometheus", "password": "guess"})
    try:
        wait_for(lambda: bad.query('up{job="databricks"} == 0'), 30, what="a refused scrape")
        assert not bad.query("databricks_job_info")
    finally:
        bad.stop()


@pytest.mark.parametrize("web, key", [
    ({"basic_auth_users": {"u": "plaintext"}}, "basic_auth_users"),
    ({"tls_server_config": {"cert_file": "missing.crt"}}, "tls_server_config.key_file"),
    ({"tls_server_config": {"cert_file": "a", "key_file": "b", "client_auth_type": "Maybe"}},
     "tls_server_config.client_auth_type"),
    ({"tls_config": {}}, "tls_config"),
])
def test_bad_web_config_exits_2_naming_the_key(tmp_path, web, key):
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(web))
    result = run_serve("--web.config.file", str(path))
    assert result.returncode == 2 and str(path) in result.stderr and key in result.stderr, result.stderr
