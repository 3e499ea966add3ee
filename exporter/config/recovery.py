"""The recovery section: failure types, their ladders, and the actions rungs can use."""

from __future__ import annotations

import shlex
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


IDLE_PRESETS: dict[str, list[str]] = {
    "vllm": ["vllm:num_requests_running", "vllm:num_requests_waiting"],
    "tgi": ["tgi_queue_size", "tgi_batch_current_size"],
    "triton": ["nv_inference_pending_request_count"],
    "sglang": ["sglang:num_running_reqs", "sglang:num_queue_reqs"],
    "llamacpp": ["llamacpp:requests_processing", "llamacpp:requests_deferred"],
}
"""The gauges whose sum is a server's in-flight work (the model-server notes, section 2)."""


class DrainCallConfig(Strict):
    """One request of a drain: take the server out of its load balancer, or put it back."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = Field(default=None, description="sent as given (JSON: set a header)")


class DrainIdleConfig(Strict):
    """In-flight work read from the server's /metrics: the sum of `metrics` (or a preset's)."""

    url: Annotated[str, Field(pattern=r"^https?://")]
    preset: Literal["vllm", "tgi", "triton", "sglang", "llamacpp"] | None = None
    metrics: list[Annotated[str, Field(pattern=r"^[A-Za-z_:][A-Za-z0-9_:]*$")]] = Field(
        default_factory=list, description="gauges summed (absent: 0); a preset's if empty"
    )
    max: Annotated[float, Field(ge=0)] = Field(default=0.0, description="idle at or below")

    @model_validator(mode="after")
    def _some_metrics(self) -> DrainIdleConfig:
        if not self.metrics and self.preset is None:
            raise ValueError("give metrics or a preset")
        return self

    def names(self) -> list[str]:
        """The gauges to sum."""
        return list(self.metrics) or IDLE_PRESETS[str(self.preset)]


class DrainConfig(Strict):
    """Optional steps around an action: call, wait until idle or the deadline, act, undo."""

    call: DrainCallConfig | None = Field(
        default=None, description="before: take it out of the load balancer / set not-ready"
    )
    idle: DrainIdleConfig | None = Field(
        default=None, description="then wait until in-flight work is at most idle.max"
    )
    deadline: PositiveDuration = Field(default=60.0, description="longest wait for idle")
    on_deadline: Literal["act", "fail"] = Field(
        default="act",
        description="still busy at the deadline: act anyway, or fail the rung (undoing)",
    )
    poll: PositiveDuration = 0.2
    undo: DrainCallConfig | None = Field(
        default=None, description="after the action, whatever its result: put it back"
    )


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

    drain: DrainConfig | None = Field(
        default=None, description="drain the server before the action, undo after it"
    )

    DISRUPTIVE: ClassVar[bool] = False
    """Whether this kind of action disrupts its target unless the config says otherwise."""

    def is_disruptive(self) -> bool:
        """Whether the target's budget and cooldown count this action."""
        return self.DISRUPTIVE if self.disruptive is None else self.disruptive

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        return "the embedding app's registered function"

    def describe(self) -> str:
        """What it does, its drain and its target."""
        said = self.does()
        if self.drain is not None:
            said = f"drain, then {said}, then undo"
        if self.target is not None:
            said += f" (target {self.target})"
        return said


class InProcessActionConfig(ActionBase):
    """A callable the embedding app registers under this name (medic.actions.register)."""

    type: Literal["in_process"]


GentlePreset = Literal[
    "vllm_reset_prefix_cache",
    "vllm_sleep_wake",
    "sglang_flush_cache",
    "triton_reload",
    "ollama_unload",
    "llamacpp_slot_erase",
]
"""A model server's lever gentler than a restart (the model-server notes, section 6)."""


class HttpActionConfig(ActionBase):
    """An HTTP request, e.g. to the model server's admin endpoint; 2xx is success. With a
    `preset`, one of a server's gentle levers, its precondition checked first; `url` is
    then the server's base URL."""

    type: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: Annotated[str, Field(pattern=r"^https?://")]
    headers: dict[str, str] = Field(default_factory=dict)
    body_fields: list[Literal[
        "failure_type", "source", "dedup_key", "fingerprint", "starts_at", "labels"
    ]] = Field(default_factory=list, description="alert fields sent as a JSON object")  # fmt: skip
    preset: GentlePreset | None = None
    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")] | None = Field(
        default=None, description="triton_reload and ollama_unload: the model"
    )
    slot: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="llamacpp_slot_erase: one slot (default: every idle one)"
    )
    request_timeout: PositiveDuration = Field(default=10.0, description="each request's")

    @model_validator(mode="after")
    def _preset_needs(self) -> HttpActionConfig:
        if self.preset in ("triton_reload", "ollama_unload") and self.model is None:
            raise ValueError(f"preset {self.preset} needs model")
        if self.preset is not None and (self.body_fields or self.method != "POST"):
            raise ValueError("a preset makes its own requests: drop method and body_fields")
        return self

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        if self.preset is not None:
            return f"{self.preset} at {self.url}"
        return f"http {self.method} {self.url}"

    def is_disruptive(self) -> bool:
        """vLLM's sleep fails requests while it sleeps; the other levers do not restart."""
        if self.disruptive is None and self.preset == "vllm_sleep_wake":
            return True
        return super().is_disruptive()


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

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        return f"command {shlex.join(self.argv)}"


class SignalActionConfig(ActionBase):
    """A signal to the process whose pid is in `pidfile`."""

    DISRUPTIVE = True

    type: Literal["signal"]
    pidfile: str
    signal: Literal["SIGHUP", "SIGINT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGQUIT"] = "SIGHUP"

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        return f"signal {self.signal} to the pid in {self.pidfile}"


class HygieneConfig(Strict):
    """Between a restart's stop and its start: the old tree gone, its GPU memory released."""

    tree: bool = Field(default=True, description="wait until every process of the old tree is gone")
    kill_leftovers: bool = Field(
        default=True, description="SIGKILL what of the old tree outlives the stop"
    )
    gpu_memory: bool = Field(
        default=False,
        description="wait until NVML shows none of the old processes holding GPU memory",
    )
    deadline: PositiveDuration = Field(
        default=30.0, description="for both, from the end of the stop; then the rung fails"
    )
    start_deadline: PositiveDuration | None = Field(
        default=None,
        description="after the start, how long the failure type's verify checks may take "
        "to pass (the rung's verify_timeout wins)",
    )


class RestartBase(ActionBase):
    """A typed restart: stop, hygiene, start."""

    DISRUPTIVE = True

    hygiene: HygieneConfig = HygieneConfig()

    def describe(self) -> str:
        """What it does, with what its hygiene waits for."""
        hygiene = self.hygiene
        waits = [*(["the old tree gone"] if hygiene.tree else []),
                 *(["its GPU memory released"] if hygiene.gpu_memory else [])]  # fmt: skip
        said = super().describe()
        return f"{said}; before the start: {' and '.join(waits)}" if waits else said


class SupervisorActionConfig(RestartBase):
    """Restart a supervisord program (XML-RPC: stop, then start, waiting until RUNNING)."""

    type: Literal["supervisor"]
    url: Annotated[str, Field(pattern=r"^(unix:///|https?://)")] = Field(
        description="unix:///run/supervisor.sock, or the [inet_http_server] URL"
    )
    program: Annotated[str, Field(min_length=1)]
    username: str | None = None
    password: SecretConfig | None = None

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        return f"supervisord restart of {self.program} at {self.url}"


class ProcessActionConfig(RestartBase):
    """Restart a process group from its pid file, or every process of a cgroup: SIGTERM,
    grace, SIGKILL, gone, start."""

    type: Literal["process"]
    pidfile: str | None = None
    cgroup: Annotated[str, Field(pattern=r"^/")] | None = Field(
        default=None,
        description="instead of pidfile: a cgroup (v2) path, /system.slice/vllm.service; "
        "every process in it and below it",
    )
    grace: Annotated[Duration, Field(ge=0)] = Field(
        default=10.0, description="how long the group may take to exit after SIGTERM"
    )
    start: list[str] = Field(
        default_factory=list, description="argv that starts it again (empty: stop only)"
    )
    cwd: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ProcessActionConfig:
        if (self.pidfile is None) == (self.cgroup is None):
            raise ValueError("give exactly one of pidfile or cgroup")
        return self

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        start = f", then {shlex.join(self.start)}" if self.start else ""
        which = (f"the process group of the pid in {self.pidfile}" if self.pidfile
                 else f"every process of cgroup {self.cgroup}")  # fmt: skip
        return f"SIGTERM, then SIGKILL, to {which}{start}"


class SystemdActionConfig(RestartBase):
    """Restart a systemd unit over D-Bus (org.freedesktop.systemd1), waiting for its jobs."""

    type: Literal["systemd"]
    unit: Annotated[str, Field(pattern=r"^[-A-Za-z0-9:_.@\\]+\.(service|socket|target|scope)$")]
    bus: Literal["system", "session"] | Annotated[str, Field(pattern=r"^(unix|tcp):")] = Field(
        default="system", description="system, session, or a D-Bus address"
    )
    job_mode: Literal["replace", "fail"] = "replace"

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        return f"systemd restart of {self.unit} over D-Bus ({self.bus} bus)"


class DockerActionConfig(RestartBase):
    """Restart a container through the Docker Engine API on its unix socket."""

    type: Literal["docker"]
    container: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
    socket: str = "/var/run/docker.sock"
    stop_timeout: Annotated[int, Field(ge=0, le=3600)] = Field(
        default=10, description="seconds the engine waits after the stop signal, then SIGKILL"
    )
    signal: Annotated[str, Field(pattern=r"^SIG[A-Z0-9]+$")] | None = None
    api_version: Annotated[str, Field(pattern=r"^1\.[0-9]+$")] | None = Field(
        default=None, description="e.g. 1.43; none: the engine's own"
    )
    api_timeout: PositiveDuration = Field(
        default=10.0, description="each call's, and the engine's time beyond stop_timeout"
    )

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        return f"docker restart of container {self.container} (stop timeout {self.stop_timeout}s)"


class KubernetesActionConfig(RestartBase):
    """Restart this node's pods matching a selector: delete, evict, or a rollout restart."""

    type: Literal["kubernetes"]
    namespace: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    selector: Annotated[dict[str, str], Field(min_length=1)] = Field(
        description="the pods' labels (matchLabels: every one must match)"
    )
    node: str | None = Field(
        default=None, description="only pods on this node (default: $NODE_NAME, if set)"
    )
    mode: Literal["delete", "evict", "rollout"] = "delete"
    grace_period: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="seconds; none: the pod's terminationGracePeriodSeconds"
    )
    kubeconfig: str | None = Field(
        default=None, description="a kubeconfig file; none: in-cluster, else ~/.kube/config"
    )
    api_timeout: PositiveDuration = 10.0

    def does(self) -> str:
        """What it does, in a few words (medic explain)."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))
        return f"kubernetes {self.mode} of this node's pods in {self.namespace} ({selector})"

    def describe(self) -> str:
        """What it does, and that it waits for the old pods to be gone."""
        said = ActionBase.describe(self)
        return f"{said}; then waits for the old pods to be gone" if self.hygiene.tree else said

    @model_validator(mode="after")
    def _no_gpu_hygiene(self) -> KubernetesActionConfig:
        if self.hygiene.gpu_memory:
            raise ValueError(
                "hygiene.gpu_memory: the kubernetes action cannot tell which host processes "
                "were the pod's; the kubelet waits for the old containers (hygiene.tree "
                "waits for the old pods to be gone)"
            )
        return self


ActionConfig = Annotated[
    InProcessActionConfig
    | HttpActionConfig
    | CommandActionConfig
    | SignalActionConfig
    | SupervisorActionConfig
    | ProcessActionConfig
    | SystemdActionConfig
    | DockerActionConfig
    | KubernetesActionConfig,
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
