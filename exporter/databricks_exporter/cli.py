"""The command line: serve, simulate, demo, once and check."""

from __future__ import annotations

import argparse
import copy
import logging
import os
import signal
import sys
import threading
from importlib import resources

import yaml

from . import __version__, logs
from .collectors import COLLECTORS
from .config import ConfigError, Settings, load, parse_listen_address, parse_duration
from .engine import Engine, Workspace, describe_error
from .exposition import Renderer
from .sinks import SINKS, start_sinks
from .sources.errors import Forbidden
from .sources.rest import RestSource
from .store import MetricStore
from .webconfig import WebConfig, load_web_config

log = logging.getLogger("databricks_exporter")

EXIT_CONFIG = 2
# How long start-up validation may retry an unreachable host before calling it a configuration error.
STARTUP_RETRY_SECONDS = 10


# The example configuration of table health and custom SQL metrics ships in the package (the docs link to it), so that
# the demo finds it in any install: when the demo's configuration names no tables or custom queries, it watches the
# example's, which shows them off and proves the example against the simulated workspace.
EXAMPLE_CONFIG = resources.files(__package__).joinpath("examples", "custom-metrics.yml")
DEMO_COLLECTORS: dict[str, dict] = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))["collectors"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="databricks-exporter",
                                     description="Prometheus exporter for Databricks workspaces.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def exporter_flags(p: argparse.ArgumentParser, web: bool = True) -> None:
        p.add_argument("--config.file", dest="config_file", metavar="PATH",
                       help="YAML configuration (default: one workspace from DATABRICKS_HOST and its credential)")
        if web:
            p.add_argument("--web.listen-address", dest="listen_address", metavar="HOST:PORT",
                           help="where /metrics is served (default 0.0.0.0:9977)")
            p.add_argument("--web.config.file", dest="web_config_file", metavar="PATH",
                           help="TLS and basic auth, in the Prometheus exporter-toolkit format")
        p.add_argument("--state.file", dest="state_file", metavar="PATH",
                       help="where cursors and counters persist across restarts")
        p.add_argument("--log.level", dest="log_level", choices=["debug", "info", "warning", "error"])
        p.add_argument("--log.format", dest="log_format", choices=["text", "json"])
        for name, spec in COLLECTORS.items():
            default = "enabled" if spec.default_enabled else "disabled"
            p.add_argument(f"--collector.{name}", dest=f"collector_{name}", action="store_true", default=None,
                           help=f"enable the {name} collector ({default} by default)")
            p.add_argument(f"--no-collector.{name}", dest=f"collector_{name}", action="store_false",
                           help=argparse.SUPPRESS)

    exporter_flags(commands.add_parser("serve", help="run the exporter"))
    exporter_flags(commands.add_parser("once", help="run every enabled collector once and print the metrics"),
                   web=False)
    exporter_flags(commands.add_parser("check", help="validate the configuration and the credential's permissions"),
                   web=False)
    sim = commands.add_parser("simulate", help="run the simulated Databricks workspace")
    sim.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--token", default=None, help="the PAT the simulator accepts (default: a fixed demo token)")
    sim.add_argument("--sql.listen", dest="sql_listen", metavar="HOST:PORT",
                     help="also serve SQL (system tables, for the billing and utilization collectors) over HTTPS here")
    sim.add_argument("--sql.hostname", dest="sql_hostname", metavar="NAME",
                     help="the name clients reach the SQL listener by, advertised in the warehouses' odbc_params "
                          "and in its certificate (default: the address of --listen)")
    sim.add_argument("--sql.tls-dir", dest="sql_tls_dir", metavar="DIR",
                     help="where to write the SQL listener's throwaway CA (ca.pem) and certificate, for clients to "
                          "trust (default: a temporary directory)")
    demo = commands.add_parser("demo", help="run the simulated workspace and the exporter together")
    exporter_flags(demo)
    demo.add_argument("--sim.listen", dest="sim_listen", default="127.0.0.1:8080", metavar="HOST:PORT")
    demo.add_argument("--seed", type=int, default=1)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load(args.config_file, COLLECTORS, SINKS)
    if getattr(args, "listen_address", None):
        try:
            settings.listen_address = parse_listen_address(args.listen_address)
        except ValueError as exc:
            raise ConfigError(f"--web.listen-address: {exc}") from None
    settings.state_file = args.state_file or settings.state_file
    settings.log_level = args.log_level or settings.log_level
    settings.log_format = args.log_format or settings.log_format
    for name, collector in settings.collectors.items():
        flag = getattr(args, f"collector_{name}", None)
        if flag is not None:
            collector.enabled = flag
    return settings


def _validate_workspaces(settings: Settings) -> None:
    """Fail at start, with exit code 2, when a workspace has no usable credential, cannot be reached, or rejects
    the credential: these are configuration mistakes. Once running, the same failures are only collector failures."""
    for index, workspace in enumerate(settings.workspaces):
        where = f"{settings.source}: workspaces[{index}]" if settings.source != "<defaults>" else "environment"
        try:
            source = RestSource.connect(workspace, retry_timeout=STARTUP_RETRY_SECONDS)
        except ValueError as exc:
            raise ConfigError(f"{where}: no usable credential for {workspace.host or 'the host'} "
                              f"({logs.REDACT(describe_error(exc))}); give a token (DATABRICKS_TOKEN), an OAuth "
                              f"client_id and client_secret, or a profile") from None
        try:
            source.workspace_id(workspace)
            source.current_user()
        except Forbidden as exc:
            raise ConfigError(f"{where}.token: the workspace {workspace.host} rejected the credential "
                              f"({logs.REDACT(describe_error(exc))})") from None
        except Exception as exc:  # noqa: BLE001 - anything else means the host cannot be used
            raise ConfigError(f"{where}.host: cannot reach {workspace.host}: {logs.REDACT(describe_error(exc))}") \
                from None


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_serve(settings: Settings, banner: str = "", web_config: WebConfig | None = None) -> int:
    from .web import serve

    store = MetricStore(settings.state_file)
    loaded = store.load()
    engine = Engine(settings, store)
    server = serve(settings.listen_address, Renderer(store), engine, web_config)
    host, port = server.server_address[:2]
    scheme = "https" if web_config and web_config.ssl_context else "http"
    log.info("listening on %s://%s:%s/metrics; %s", scheme, host, port, loaded,
             extra={"collectors": ",".join(c.name for c in engine.enabled)})
    if banner:
        print(banner.format(port=port), flush=True)
    engine.start()
    stop = threading.Event()
    sinks = start_sinks(settings, store, stop)
    _wait_for_signal()
    log.info("shutting down")
    stop.set()
    for sink in sinks:
        sink.stop()
    engine.stop()
    server.shutdown()
    return 0


def cmd_once(settings: Settings) -> int:
    store = MetricStore(settings.state_file)
    store.load()
    failures = Engine(settings, store).run_once()
    sys.stdout.buffer.write(Renderer(store).render())
    sys.stdout.flush()
    for failure in failures:
        print(f"collector failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_check(settings: Settings) -> int:
    ok = True
    print(f"configuration {settings.source}: valid")
    for workspace_settings in settings.workspaces:
        print(f"\nworkspace {workspace_settings.name} ({workspace_settings.host or 'from profile'})")
        workspace = Workspace(workspace_settings, MetricStore())
        try:
            workspace.connect()
            user = workspace.rest.current_user()
            print(f"  connected: workspace_id {workspace.workspace_id}, as "
                  f"{user.get('userName') or user.get('displayName')}")
        except Exception as exc:  # noqa: BLE001
            print(f"  FAILED to connect: {logs.REDACT(describe_error(exc))}")
            ok = False
            continue
        for name, collector_settings in settings.collectors.items():
            if not collector_settings.enabled:
                print(f"  {name:<12} disabled")
                continue
            spec = COLLECTORS[name]
            try:
                seen = spec(workspace, collector_settings, settings.lookback).check()
                print(f"  {name:<12} OK        {seen}")
            except Exception as exc:  # noqa: BLE001
                ok = False
                print(f"  {name:<12} FAILED    {logs.REDACT(describe_error(exc))}\n"
                      f"  {'':<12}           needs: {spec.permission}")
    print("\nall checks passed" if ok else "\nsome checks failed")
    return 0 if ok else 1


def demo_collectors(settings: Settings) -> None:
    """The demo's tables and custom queries (DEMO_COLLECTORS, the example's), for the collectors its configuration
    leaves without any; their own intervals unless the configuration sets one."""
    for name, section in DEMO_COLLECTORS.items():
        collector, spec = settings.collectors.get(name), COLLECTORS.get(name)
        if collector is None or any(collector.options.get(key) for key in section if key != "interval"):
            continue
        if collector.interval == spec.default_interval:
            default_timeout = max(collector.interval, 10.0)
            collector.interval = parse_duration(section["interval"])
            if collector.timeout == default_timeout:        # a timeout the configuration set is kept
                collector.timeout = max(collector.interval, 10.0)
        collector.options.update({key: copy.deepcopy(value) for key, value in section.items() if key != "interval"})
        spec.validate_options(collector.options, lambda message, key: ConfigError(f"demo {name}.{key}: {message}"))
        collector.validated = True


def _simulator_server():
    """The simulated workspace's server module: a package of its own, installed by the `simulator` extra."""
    try:
        import duckdb, sqlglot  # noqa: F401,E401  (the extra's own packages: the code alone ships in every install)
        from databricks_sim import server
    except ImportError as exc:
        print(f"databricks-exporter: the simulated workspace is not installed ({exc}): "
              "pip install 'databricks-exporter[simulator]'", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    return server


def cmd_demo(args: argparse.Namespace) -> int:
    SimulatorServer = _simulator_server().SimulatorServer

    host, _, port = args.sim_listen.rpartition(":")
    # sql_port=0: an HTTPS listener for SQL on a free port, with a throwaway CA and certificate (see databricks_sim/tls.py).
    simulator = SimulatorServer(host=host or "127.0.0.1", port=int(port), seed=args.seed, sql_port=0,
                                permission_gaps=True).start()
    os.environ["DATABRICKS_HOST"] = simulator.url
    os.environ["DATABRICKS_TOKEN"] = simulator.token
    for name in ("DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_CONFIG_PROFILE"):
        os.environ.pop(name, None)
    settings = _settings(args)
    if args.listen_address is None and args.config_file is None:
        settings.listen_address = "127.0.0.1:9977"
    # SQL collectors work out of the box: the first serverless warehouse (it starts in seconds), and the CA that
    # signed the simulator's certificate.
    serverless = [w.id for w in simulator.workspace.warehouses if w.serverless] or \
        [w.id for w in simulator.workspace.warehouses]
    for workspace in settings.workspaces:
        workspace.warehouse_id = workspace.warehouse_id or serverless[0]     # config.load read DATABRICKS_WAREHOUSE_ID
        workspace.tls_ca_bundle = workspace.tls_ca_bundle or simulator.tls_ca_file
    demo_collectors(settings)
    logs.setup(settings.log_level, settings.log_format)
    banner = (f"simulated workspace: {simulator.url}  (SQL: https://{simulator.sql_hostname}:{simulator.sql_port}, "
              f"warehouse {settings.workspaces[0].warehouse_id})\n"
              f"exporter:            http://127.0.0.1:{{port}}/  (metrics at /metrics; the first values "
              f"arrive within a minute)\nPress Ctrl-C to stop.")
    try:
        return cmd_serve(settings, banner, load_web_config(args.web_config_file))
    finally:
        simulator.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        run = _simulator_server().run
        logs.setup("info", "text")
        run(args.listen, args.seed, args.token, args.sql_listen, args.sql_hostname, args.sql_tls_dir)
        return 0
    try:
        if args.command == "demo":
            return cmd_demo(args)
        settings = _settings(args)
        logs.register_secrets(settings)
        logs.setup(settings.log_level, settings.log_format)
        if args.command == "serve":
            web_config = load_web_config(args.web_config_file)
            _validate_workspaces(settings)
    except ConfigError as exc:
        print(f"databricks-exporter: configuration error: {logs.REDACT(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        return cmd_serve(settings, web_config=web_config)
    if args.command == "once":
        return cmd_once(settings)
    return cmd_check(settings)


if __name__ == "__main__":
    sys.exit(main())
