"""Alert notifications as ErrorBus events (``error_type`` ``alert_firing``/``alert_resolved``).

One event per alert of a notification, so ErrorBus queries by agent and severity work on them;
the whole alert (labels, value, times) travels in ``details``.
"""

from __future__ import annotations

from actors.errors.models import ErrorEvent, Severity
from deployments.observability.alert_models import Notification

__all__ = ["alert_events"]

_SEVERITY: dict[str, Severity] = {"info": "info", "warning": "warning", "critical": "critical"}


def alert_events(notification: Notification, source: str) -> list[ErrorEvent]:
    """The events to publish for ``notification``; ``source`` names the hub's agent."""
    events = []
    for alert in notification.alerts:
        resolved = alert.state == "resolved"
        where = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        events.append(
            ErrorEvent(
                host=alert.labels.get("host", "")[:128],
                agent=alert.labels.get("agent") or source,
                error_type="alert_resolved" if resolved else "alert_firing",
                severity="info" if resolved else _SEVERITY[alert.severity],
                message=f"[{alert.state}] {alert.rule}: {alert.summary or where}",
                details={
                    "alert": alert.model_dump(mode="json"),
                    "group": dict(notification.group_labels),
                },
            )
        )
    return events
