"""`metrics-bridge dashboards apply datadog`: create or update the dashboard and monitors through datadog-api-client.

Idempotent: the dashboard is found by title and each monitor by name, then
updated in place; only what is missing is created, so running it again after an
upgrade never duplicates anything.
"""

from __future__ import annotations

import os
from typing import Any

from datadog_api_client import ApiClient, Configuration
from datadog_api_client.model_utils import OpenApiModel, validate_and_convert_types
from datadog_api_client.v1.api.dashboards_api import DashboardsApi
from datadog_api_client.v1.api.monitors_api import MonitorsApi
from datadog_api_client.v1.model.dashboard import Dashboard
from datadog_api_client.v1.model.monitor import Monitor
from datadog_api_client.v1.model.monitor_update_request import MonitorUpdateRequest

from bridge import secrets
from bridge.dashboards import datadog


def configuration_from_env() -> Configuration:
    """DD_API_KEY and DD_APP_KEY (required), DD_SITE (default datadoghq.com), as Datadog's own tools read them."""
    keys = {name: os.environ.get(name, "") for name in ("DD_API_KEY", "DD_APP_KEY")}
    missing = [name for name, value in keys.items() if not value]
    if missing:
        raise ValueError(f"set {' and '.join(missing)}: creating dashboards and monitors needs an application key")
    for value in keys.values():
        secrets.register(value)
    site = os.environ.get("DD_SITE") or "datadoghq.com"
    return Configuration(
        host=f"https://api.{site}",
        api_key={"apiKeyAuth": keys["DD_API_KEY"], "appKeyAuth": keys["DD_APP_KEY"]},
    )


def _model(data: dict[str, Any], model: type[OpenApiModel], configuration: Configuration) -> Any:
    return validate_and_convert_types(data, (model,), ["body"], True, True, configuration)


def apply_datadog(configuration: Configuration | None = None) -> list[str]:
    """Create or update; one line per object saying which it was."""
    configuration = configuration or configuration_from_env()
    done = []
    with ApiClient(configuration) as client:
        dashboards, monitors = DashboardsApi(client), MonitorsApi(client)
        body = datadog.dashboard()
        found = [d.id for d in dashboards.list_dashboards_with_pagination() if d.title == body["title"]]
        if found:
            dashboards.update_dashboard(found[0], _model(body, Dashboard, configuration))
            done.append(f"dashboard {found[0]} updated: {body['title']}")
        else:
            created = dashboards.create_dashboard(_model(body, Dashboard, configuration))
            done.append(f"dashboard {created.id} created: {body['title']}")
        for monitor in datadog.monitors():
            existing = [m.id for m in monitors.list_monitors(name=monitor["name"]) if m.name == monitor["name"]]
            if existing:
                monitors.update_monitor(existing[0], _model(monitor, MonitorUpdateRequest, configuration))
                done.append(f"monitor {existing[0]} updated: {monitor['name']}")
            else:
                new = monitors.create_monitor(_model(monitor, Monitor, configuration))
                done.append(f"monitor {new.id} created: {monitor['name']}")
    return done
