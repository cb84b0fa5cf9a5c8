"""What every Databricks dashboard shares: the datasource and workspace variables, links to the siblings, and panel
helpers that make a unit, the datasource and `[$__rate_interval]` the default rather than something to remember."""

from __future__ import annotations

import json

from grafana_foundation_sdk.builders import bargauge, dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders.common import StackingConfig, TableSortByFieldState, VizLegendOptions
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (BarGaugeDisplayMode, BigValueColorMode, BigValueGraphMode,
                                                  BigValueTextMode,
                                                  LegendDisplayMode, LegendPlacement, StackingMode,
                                                  VizOrientation)
from grafana_foundation_sdk.models.dashboard import (DashboardCursorSync, DashboardLinkType, DataSourceRef,
                                                     DataTransformerConfig, DynamicConfigValue, Threshold,
                                                     ThresholdsMode, ValueMap, ValueMappingResult, VariableOption,
                                                     VariableRefresh, VariableSort)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from ..config import DASHBOARDS, dashboard_path

TAGS = ["databricks"]

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# The uid grafana/provisioning/datasources/prometheus.yml gives the Prometheus datasource.
DEFAULT_DATASOURCE_UID = "prometheus"

# Selector fragments. "All" means ".*", which also matches series without the label.
WS = 'workspace_id=~"$workspace"'
RATE = "[$__rate_interval]"

# Databricks list prices (system.billing.list_prices) are published in USD; the exporter keeps the currency as a
# label. Change this one constant for a discount sheet in another currency.
CURRENCY = "currencyUSD"

# Joins that turn ids into names, from the _info metrics.
JOB_NAME = "* on(workspace_id, job_id) group_left(job_name) databricks_job_info"
CLUSTER_NAME = "* on(workspace_id, cluster_id) group_left(cluster_name) databricks_cluster_info"
WAREHOUSE_NAME = "* on(workspace_id, warehouse_id) group_left(warehouse_name) databricks_warehouse_info"
PIPELINE_NAME = "* on(workspace_id, pipeline_id) group_left(pipeline_name) databricks_pipeline_info"
WORKSPACE_NAME = "* on(workspace_id) group_left(workspace_name) databricks_workspace_info"

# Grafana's date units take milliseconds.
MS = " * 1000"

# Table columns that say nothing to a reader.
NOISE_COLUMNS = ["Time", "__name__", "job", "instance"]


# --- variables -------------------------------------------------------------------------------------------------

def datasource_variable() -> dashboard.DatasourceVariable:
    return (dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
            .current(VariableOption(selected=True, text="Prometheus", value=DEFAULT_DATASOURCE_UID)))


def info_variable(name: str, label: str, metric: str, id_label: str, name_label: str, *, multi: bool,
                  selector: str = WS) -> dashboard.QueryVariable:
    """A variable whose values are ids and whose options show names, read from an _info metric.

    query_result() prints labels in Prometheus' order (sorted by name), and every <x>_id sorts before <x>_name,
    so one regex with named groups picks both.
    """
    variable = (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE)
                .query(f"query_result({metric}{{{selector}}})" if selector else f"query_result({metric})")
                .regex(f'/{id_label}="(?<value>[^"]+)".*{name_label}="(?<text>[^"]+)"/')
                .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC))
    if multi:
        variable = (variable.multi(True).include_all(True).all_value(".*")
                    .current(VariableOption(selected=True, text="All", value="$__all")))
    return variable


def workspace_variable() -> dashboard.QueryVariable:
    return info_variable("workspace", "Workspace", "databricks_workspace_info", "workspace_id", "workspace_name",
                         multi=True, selector="")


# --- queries ---------------------------------------------------------------------------------------------------

def query(expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(" ".join(expr.split())).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if instant:
        target = target.instant()
    else:
        target = target.range()
    if table_format:
        target = target.format(PromQueryFormat.TABLE)
    return target


def _targets(panel, targets):
    for target in targets:
        panel = panel.with_target(target if not isinstance(target, str) else query(target))
    return panel


def _thresholds(steps: list[tuple[float | None, str]]) -> dashboard.ThresholdsConfig:
    return (dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=value, color=color) for value, color in steps]))


GREEN = [(None, "green")]
# Counts of broken things: anything above zero is red.
BAD_IF_ANY = [(None, "green"), (1, "red")]


# --- panels ----------------------------------------------------------------------------------------------------

def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)


def timeseries_panel(title: str, unit: str, *targets, description: str = "", w: int = 12, h: int = 8,
                     stack: bool = False, min_value: float | None = None, max_value: float | None = None,
                     decimals: int | None = None, min_interval: str | None = None) -> timeseries.Panel:
    """A time series; `min_interval` widens $__interval, and with it $__rate_interval, for events minutes apart
    (a quantile of a few events in a two-minute window is mostly a gap)."""
    panel = (timeseries.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .span(w).height(h).fill_opacity(10).line_width(1)
             .legend(VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM)
                     .show_legend(True)))
    if stack:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(40)
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if decimals is not None:
        panel = panel.decimals(decimals)
    if min_interval:
        panel = panel.interval(min_interval)
    return _targets(panel, targets)


def stat_panel(title: str, unit: str, *targets, description: str = "", w: int = 4, h: int = 4,
               thresholds: list[tuple[float | None, str]] = GREEN, decimals: int | None = None,
               mappings: dict[str, tuple[str, str]] | None = None, links: list | None = None,
               show_name: bool = False) -> stat.Panel:
    """A single value; `show_name` shows the series' legend instead of its value (for _info metrics)."""
    panel = (stat.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .span(w).height(h).graph_mode(BigValueGraphMode.AREA).color_mode(BigValueColorMode.VALUE)
             .thresholds(_thresholds(thresholds)))
    if decimals is not None:
        panel = panel.decimals(decimals)
    if mappings:
        panel = panel.mappings([ValueMap(options={value: ValueMappingResult(text=label, color=color)
                                                  for value, (label, color) in mappings.items()})])
    if links:
        panel = panel.links(links)
    if show_name:
        panel = panel.text_mode(BigValueTextMode.NAME).graph_mode(BigValueGraphMode.NONE)
    return _targets(panel, targets)


def bargauge_panel(title: str, unit: str, *targets, description: str = "", w: int = 12, h: int = 8,
                   thresholds: list[tuple[float | None, str]] = GREEN, min_value: float | None = 0,
                   max_value: float | None = None) -> bargauge.Panel:
    panel = (bargauge.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .span(w).height(h).orientation(VizOrientation.HORIZONTAL).display_mode(BarGaugeDisplayMode.GRADIENT)
             .thresholds(_thresholds(thresholds)))
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return _targets(panel, targets)


def table_panel(title: str, unit: str, *exprs: str, value: str | list[str] = "Value", description: str = "",
                w: int = 12, h: int = 8, hide: tuple[str, ...] = (), links: dict[str, tuple[str, str]] | None = None,
                sort_by: str | None = None) -> table.Panel:
    """An instant table of one or more queries with the same labels, merged into one row per series; `value`
    names the value column (one name per query when there are several), `links` maps a column to a data link."""
    panel = (table.Panel().title(title).description(description).unit(unit).datasource(DATASOURCE)
             .span(w).height(h))
    for expr in exprs:
        panel = panel.with_target(query(expr, instant=True, table_format=True))
    names = [value] if isinstance(value, str) else list(value)
    if len(names) != len(exprs):
        raise ValueError(f"{title}: {len(exprs)} queries but value names {names}")
    if len(exprs) == 1:
        rename = {"Value": names[0]}
    else:
        panel = panel.with_transformation(DataTransformerConfig(id_val="merge", options={}))
        rename = {f"Value #{chr(ord('A') + index)}": name for index, name in enumerate(names)}
    exclude = {name: True for name in NOISE_COLUMNS + list(hide)}
    panel = panel.with_transformation(DataTransformerConfig(id_val="organize", options={
        "excludeByName": exclude, "renameByName": rename}))
    for column, (link_title, url) in (links or {}).items():
        panel = panel.override_by_name(column, [DynamicConfigValue(id_val="links",
                                                                   value=[{"title": link_title, "url": url}])])
    if sort_by:
        panel = panel.sort_by([TableSortByFieldState().display_name(sort_by).desc(True)])
    return panel


# A data link from a table row with job_id and workspace_id columns to the job's drill-down.
JOB_DRILLDOWN = ("Open the job's drill-down",
                 f"{dashboard_path('databricks-jobs')}?var-workspace=${{__data.fields.workspace_id}}"
                 "&var-job=${__data.fields.job_id}"
                 "&${datasource:queryparam}&${__url_time_range}")


# --- dashboards ------------------------------------------------------------------------------------------------

def sibling_links(uid: str) -> list[dashboard.DashboardLink]:
    """One link per other dashboard, carrying the time range and the variables they share."""
    return [dashboard.DashboardLink(title).type(DashboardLinkType.LINK).url(dashboard_path(other)).icon("dashboard")
            .include_vars(True).keep_time(True).tooltip(f"Databricks: {title}")
            for other, title in DASHBOARDS.items() if other != uid]


def new_dashboard(uid: str, description: str, variables: list, items: list) -> dashboard.Dashboard:
    builder = (dashboard.Dashboard(f"Databricks / {DASHBOARDS[uid]}").uid(uid).description(description)
               .tags(TAGS).editable().refresh("1m").time("now-6h", "now").timezone("browser")
               .tooltip(DashboardCursorSync.CROSSHAIR).links(sibling_links(uid)))
    builder = builder.with_variable(datasource_variable()).with_variable(workspace_variable())
    for variable in variables:
        builder = builder.with_variable(variable)
    for item in items:
        builder = builder.with_row(item) if isinstance(item, dashboard.Row) else builder.with_panel(item)
    return builder


def render(builder: dashboard.Dashboard) -> dict:
    """The dashboard as Grafana's JSON model, with panel ids and query refIds numbered in order (the builders
    leave them unset, and Grafana needs them unique to keep panel links and edits stable)."""
    model = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    for number, panel in enumerate(model["panels"], start=1):
        panel["id"] = number
        for index, target in enumerate(panel.get("targets", [])):
            target["refId"] = chr(ord("A") + index)
    return model


# --- expressions more than one dashboard shows -----------------------------------------------------------------

# Jobs whose newest completed run failed (FAILED, TIMEDOUT, INTERNAL_ERROR) and that have not succeeded since; the
# value is when that run ended. The same expression as the DatabricksJobLastRunFailed alert, paused jobs included.
JOB_LAST_RUN_FAILED = (
    f"databricks_job_last_failure_timestamp_seconds{{{WS}}} > on(workspace_id, job_id) "
    f"(databricks_job_last_success_timestamp_seconds{{{WS}}} "
    f"or databricks_job_last_failure_timestamp_seconds{{{WS}}} * 0)")

# Share of the last hour's concluded runs that failed, over every selected workspace (the recorded ratio is per
# workspace, and ratios do not add up).
JOB_FAILURE_RATIO_1H = (f"sum(workspace:databricks_job_runs_failed:increase1h{{{WS}}}) "
                        f"/ (sum(workspace:databricks_job_runs_concluded:increase1h{{{WS}}}) > 0)")

FIRING_ALERTS = 'ALERTS{alertname=~"Databricks.*", alertstate="firing", workspace_id=~"$workspace|"}'
