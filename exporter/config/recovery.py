"""The recovery section: failure types, their ladders, and the actions rungs can use."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator

from exporter.config import references
from exporter.config.base import CheckName, PositiveDuration, Strict
from exporter.config.server import SecretConfig
from exporter.config.units import Duration, Located

BuiltinFailureType = Literal[
    "model_loading_failure",
    "vram_exhaustion",
    "generation_pipeline_error",
    "hardware_optimization_failure",
    "system_resource_error",
    "network_error",
]
FAILURE_TYPES: tuple[str, ...] = get_args(BuiltinFailureType)
"""The six built-in names: the vocabulary of the docs, the shipped rules and presets."""
FAILURE_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
FailureTypeName = Annotated[str, Field(pattern=FAILURE_TYPE_PATTERN)]
"""A built-in name or one of the operator's own (model_server_hung): lower snake case, at
most 64 characters, so it is a bounded label value everywhere it is exported."""
ActionName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
BODY_FIELDS = ("failure_type", "source", "dedup_key", "fingerprint", "starts_at", "labels")
SIGNALS = ("SIGHUP", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGQUIT")


class ActionBase(Strict):
    """What every action may say: the thing it acts on, and whether acting disrupts it."""

    target: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="what it acts on (vllm.service, a container, a pod): rungs on one "
        "target never run at once, and the target's cooldown and budget apply",
    )
    disruptive: bool | None = Field(
        default=None,
        description="counts against the target's budget (default: command, signal and "
        "supervisor actions are, http and in-process ones are not)",
    )

    DISRUPTIVE: ClassVar[bool] = False
    """Whether this kind of action disrupts its target unless the config says otherwise."""

    def is_disruptive(self) -> bool:
        """Whether the target's budget and cooldown count this action."""
        return self.DISRUPTIVE if self.disruptive is None else self.disruptive


class InProcessActionConfig(ActionBase):
    """A callable the embedding app registers under this name (medic.actions.register)."""

    type: Literal["in_process"]


class HttpActionConfig(ActionBase):
    """An HTTP request, e.g. to the model server's admin endpoint; 2xx is success."""

    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)
    body_fields: list[Literal[
        "failure_type", "source", "dedup_key", "fingerprint", "starts_at", "labels"
    ]] = Field(default_factory=list, description="alert fields sent as a JSON object")  # fmt: skip


class CommandActionConfig(ActionBase):
    """A program run with an argv list (never a shell); alert labels arrive only as
    MEDIC_LABEL_<NAME> environment variables."""

    DISRUPTIVE = True

    type: Literal["command"]
    argv: Annotated[list[str], Field(min_length=1)]
    cwd: str | None = None
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict, description="variables set for the command, as given"
    )
    env_passthrough: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description="variables of medic's own environment the command may see (by name)",
    )


class SignalActionConfig(ActionBase):
    """A signal to the process whose pid is in `pidfile`."""

    DISRUPTIVE = True

    type: Literal["signal"]
    pidfile: str
    signal: Literal["SIGHUP", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGQUIT"] = "SIGHUP"


class SupervisorActionConfig(ActionBase):
    """Restart a supervisord program (XML-RPC: stop, then start, waiting until RUNNING)."""

    DISRUPTIVE = True

    type: Literal["supervisor"]
    url: Annotated[str, Field(pattern=r"^(unix:///|https?://)")] = Field(
        description="unix:///run/supervisor.sock, or the [inet_http_server] URL"
    )
    program: Annotated[str, Field(min_length=1)]
    username: str | None = None
    password: SecretConfig | None = None


class ProcessActionConfig(ActionBase):
    """Restart a process group from its pid file: SIGTERM, grace, SIGKILL, gone, start."""

    DISRUPTIVE = True

    type: Literal["process"]
    pidfile: str
    grace: Annotated[Duration, Field(ge=0)] = Field(
        default=10.0, description="how long the group may take to exit after SIGTERM"
    )
    deadline: PositiveDuration = Field(
        default=10.0, description="how long after SIGKILL the tree must be gone"
    )
    start: list[str] = Field(
        default_factory=list, description="argv that starts it again (empty: stop only)"
    )
    cwd: str | None = None


ActionConfig = Annotated[
    InProcessActionConfig
    | HttpActionConfig
    | CommandActionConfig
    | SignalActionConfig
    | SupervisorActionConfig
    | ProcessActionConfig,
    Field(discriminator="type"),
]


class RungConfig(Strict):
    """One step of a ladder."""

    action: ActionName
    timeout: PositiveDuration = 30.0
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="passed to in-process actions"
    )
    settle_delay: Annotated[Duration, Field(ge=0)] | None = None
    verify_timeout: Annotated[Duration, Field(ge=0)] | None = Field(
        default=None, description="this rung's verify deadline (a restart's start-up time)"
    )


class CooldownConfig(Strict):
    """How long a failure type rests after its ladder ran; grows with consecutive failures."""

    base: Annotated[Duration, Field(ge=0)] = 300.0
    multiplier: Annotated[float, Field(ge=1)] = 2.0
    max: Annotated[Duration, Field(ge=0)] = 3600.0


class FailureConfig(Strict):
    """The ladder for one failure type and the checks that tell whether it is gone."""

    ladder: Annotated[list[RungConfig], Field(min_length=1)]
    verify: list[CheckName] = Field(default_factory=list)
    settle_delay: Annotated[Duration, Field(ge=0)] = 2.0
    verify_timeout: Annotated[Duration, Field(ge=0)] = Field(
        default=30.0,
        description="after the settle delay, keep polling the verify checks this long for "
        "them to pass (0: one look); a rung's own verify_timeout wins",
    )
    verify_interval: PositiveDuration = Field(default=1.0, description="between two looks")
    verify_query: str | None = Field(
        default=None,
        description="a PromQL expression (the alert's condition) that must come back empty "
        "from recovery.prometheus_url, polled like the checks",
    )
    cooldown: CooldownConfig | None = None

    @property
    def verifies(self) -> bool:
        """Whether anything confirms a rung worked (checks or the alert's condition)."""
        return bool(self.verify or self.verify_query)

    @field_validator("ladder", mode="before")
    @classmethod
    def _short_rungs(cls, value: object) -> object:
        """Allow `- clear_gpu_cache` as shorthand for `- {action: clear_gpu_cache}`."""
        if isinstance(value, list):
            return [{"action": v} if isinstance(v, str) else v for v in value]
        return value


class RateLimitConfig(Strict):
    """At most `actions` rungs started per `per` seconds, across all failure types."""

    actions: int = Field(default=30, ge=1)
    per: PositiveDuration = 60.0


class TargetBudgetConfig(Strict):
    """At most `actions` disruptive actions on the target per `per`."""

    actions: int = Field(default=1, ge=1)
    per: PositiveDuration = 900.0


class TargetConfig(Strict):
    """Limits on one target across every failure type and ladder."""

    cooldown: Annotated[Duration, Field(ge=0)] = Field(
        default=0.0, description="rest after a disruptive action on it ends"
    )
    budget: TargetBudgetConfig | None = None


class RetentionConfig(Strict):
    """How much history the journal keeps."""

    max_age: PositiveDuration = 30 * 86400.0
    max_count: int = Field(default=10_000, ge=1, description="attempts kept, newest first")
    max_episodes: int = Field(
        default=100_000, ge=1,
        description="closed episodes kept for dedup, newest first (open ones always stay)",
    )  # fmt: skip


class RecoveryConfig(Strict):
    """Everything the recovery engine does."""

    dry_run: bool = False
    queue_size: int = Field(default=1000, ge=1)
    workers: int = Field(default=4, ge=1, le=64, description="ladders running at once")
    max_waiting_per_type: int = Field(
        default=2, ge=0, description="events that may wait behind a running ladder of their type"
    )
    rate_limit: RateLimitConfig = RateLimitConfig()
    cooldown: CooldownConfig = CooldownConfig()
    retention: RetentionConfig = RetentionConfig()
    action_breaker_failures: int = Field(
        default=3, ge=1, description="consecutive failures that open an action's breaker"
    )
    action_breaker_wait: PositiveDuration = 600.0
    interrupted: Literal["retry_once", "give_up"] = Field(
        default="retry_once",
        description="an episode whose rung was cut off by a crash or stop: verify and go on "
        "with the next rung once (never re-running the cut-off rung), or end it for a person",
    )
    prometheus_url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None, description="where verify_query is evaluated (Prometheus' HTTP API)"
    )
    actions: dict[ActionName, ActionConfig] = Field(default_factory=dict)
    failures: dict[FailureTypeName, FailureConfig] = Field(default_factory=dict)
    targets: dict[Annotated[str, Field(min_length=1, max_length=128)], TargetConfig] = Field(
        default_factory=dict,
        description="cooldown and budget per target named by actions' `target`",
    )

    @model_validator(mode="after")
    def _actions_exist(self) -> RecoveryConfig:
        problems = references.actions(
            self.model_dump(include={"actions", "failures", "prometheus_url"})
        )
        if problems:
            raise Located(problems)
        return self
