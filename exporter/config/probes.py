"""Probe checks of the model server from outside: HTTP and TCP.

Option names follow blackbox_exporter (valid_status_codes, fail_if_body_matches_regexp …)
and the thresholds Kubernetes probes (failure_threshold, success_threshold, on CheckBase).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from exporter.config.base import CheckName, PositiveDuration, Strict
from exporter.config.checkbase import CheckBase
from exporter.config.server import BasicAuthConfig, SecretConfig
from exporter.config.units import ByteSize
from exporter.config.webhook import ClientTlsConfig

HttpUrl = Annotated[str, Field(pattern=r"^https?://")]


def compiles(patterns: list[str]) -> list[str]:
    """The patterns, each a valid regular expression (else a ValueError saying which)."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return patterns


class JsonFieldConfig(Strict):
    """A field of a JSON answer that must hold a value: `field` is a dotted path
    (`data.status`, `models.0.id`)."""

    field: Annotated[str, Field(min_length=1)]
    equals: str | int | float | bool | None = None


class HttpCheckConfig(CheckBase):
    """An HTTP request to the model server; passes on an expected status (and body)."""

    type: Literal["http"]
    url: HttpUrl
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(default=None, description="request body, sent as given")
    valid_status_codes: list[Annotated[int, Field(ge=100, le=599)]] = Field(
        default_factory=list, description="statuses that pass; empty: any 2xx"
    )
    fail_if_body_matches_regexp: list[str] = Field(default_factory=list)
    fail_if_body_not_matches_regexp: list[str] = Field(default_factory=list)
    body_json: JsonFieldConfig | None = Field(
        default=None, description="the answer is JSON and this field holds this value"
    )
    bearer_token: SecretConfig | None = None
    basic_auth: BasicAuthConfig | None = None
    tls: ClientTlsConfig | None = None
    follow_redirects: bool = True
    body_size_limit: ByteSize = Field(
        default=1024 * 1024, ge=1, description="read at most this much of the answer"
    )

    _patterns = field_validator("fail_if_body_matches_regexp", "fail_if_body_not_matches_regexp")(
        compiles
    )

    @model_validator(mode="after")
    def _one_auth(self) -> HttpCheckConfig:
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("give at most one of bearer_token or basic_auth")
        return self


class TcpCheckConfig(CheckBase):
    """A TCP connection to host:port; with `expect`, the first bytes read must match."""

    type: Literal["tcp"]
    address: Annotated[str, Field(pattern=r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")]
    send: str | None = Field(default=None, description="sent once connected")
    expect: str | None = Field(default=None, description="a regexp the answer must match")

    @field_validator("expect")
    @classmethod
    def _expect_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compiles([value])
        return value


class RequestCheckConfig(HttpCheckConfig):
    """One tiny real request, with a latency bound: an OpenAI-compatible completion or chat
    with max_tokens 1 (vLLM, SGLang, llama.cpp, TGI's /v1), or the configured method, url
    and body (Triton, a TTS server). Never two at once; cancelled at its timeout; skipped,
    not failed, while the server's own metrics show it making progress."""

    type: Literal["request"]  # type: ignore[assignment]
    api: Literal["openai_completions", "openai_chat", "custom"] = "openai_completions"
    model: str | None = Field(default=None, description="openai apis: the model to ask")
    prompt: str = "Hi"
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] = "POST"
    max_latency: PositiveDuration | None = Field(
        default=None, description="an answer slower than this fails (default: the timeout)"
    )
    skip_while_progressing: CheckName | None = Field(
        default=None,
        description="a metrics check: while its progress counters grow, the request is skipped",
    )
    progress_window: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="how recent that progress must be (default: 2 intervals)"
    )

    @model_validator(mode="after")
    def _model_for_openai(self) -> RequestCheckConfig:
        if self.api != "custom" and not self.model:
            raise ValueError(f"api {self.api} needs model")
        return self

    def request(self) -> tuple[str, str, str | None]:
        """(method, url, body) of the request to make."""
        import json  # noqa: PLC0415

        base = self.url.rstrip("/")
        body: dict[str, object]
        if self.api == "openai_completions":
            body = {"model": self.model, "prompt": self.prompt, "max_tokens": 1,
                    "temperature": 0}  # fmt: skip
            return "POST", f"{base}/v1/completions", json.dumps(body)
        if self.api == "openai_chat":
            body = {"model": self.model, "max_tokens": 1, "temperature": 0,
                    "messages": [{"role": "user", "content": self.prompt}]}  # fmt: skip
            return "POST", f"{base}/v1/chat/completions", json.dumps(body)
        return self.method, self.url, self.body
