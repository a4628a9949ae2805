"""Client of the Ray dashboard's Serve REST API: the same calls ``serve deploy`` makes."""

from __future__ import annotations

from typing import Any

import httpx

from cluster.base.errors import ClusterError

__all__ = ["DashboardClient"]


class DashboardClient:
    """Deploys Serve configs and reads Serve's status through the dashboard.

    Args:
        url: ``http://HOST:PORT`` of the Ray dashboard.
        token: the cluster's Ray token (sent as a bearer token).
    """

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )

    def close(self) -> None:
        self._http.close()

    def deploy(self, config: dict[str, Any]) -> None:
        """PUT the whole Serve config; Serve reconciles toward it (idempotent).

        Raises:
            ClusterError: the dashboard refused the config or is unreachable.
        """
        response = self._request("PUT", "/api/serve/applications/", json=config)
        if response.status_code != 200:
            raise ClusterError(
                f"the dashboard refused the Serve config ({response.status_code}): "
                f"{response.text[:2000]}"
            )

    def serve_details(self) -> dict[str, Any]:
        """Return Serve's instance details (applications, deployments, replicas, proxies)."""
        response = self._request("GET", "/api/serve/applications/")
        if response.status_code != 200:
            raise ClusterError(
                f"the dashboard answered {response.status_code} to a Serve status query"
            )
        details: dict[str, Any] = response.json()
        return details

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClusterError(f"Ray dashboard at {self.url} is unreachable: {exc}") from exc
