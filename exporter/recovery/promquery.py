"""The alert's own condition, asked of Prometheus: verification that the expression an alert
fires on has come back empty (its `for:` need not pass again)."""

from __future__ import annotations

from typing import Any


class PrometheusQuery:
    """`query(expr)`: what still matches, in words; "" when nothing does."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        import httpx  # noqa: PLC0415 - only where a verify_query is configured

        self._url = url.rstrip("/")
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": "medic-verify"})
        self._errors = (httpx.HTTPError, ValueError, KeyError)

    def __call__(self, expr: str) -> str:
        """Evaluate now; an error counts as "not verified" (it says so)."""
        try:
            answer = self._client.get(f"{self._url}/api/v1/query", params={"query": expr})
            answer.raise_for_status()
            data: dict[str, Any] = answer.json()["data"]
        except self._errors as exc:
            return f"cannot ask Prometheus: {type(exc).__name__}: {exc}"
        result = data.get("result") or []
        if data.get("resultType") == "scalar" or not result:
            return ""
        first = result[0]
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(first.get("metric", {}).items()))
        return f"{len(result)} series still match, e.g. {{{labels}}} {first['value'][1]}"

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
