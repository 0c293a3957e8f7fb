"""Loads policy plugins through entry points and runs the configured policies.

Built-in and third-party policies take the same path: entry point → pluggy registration →
`idgate_policy_definitions` → options validated against the definition → `build(options)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import inspect
import time
import types
from collections.abc import Awaitable, Coroutine, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

import msgspec
import pluggy
import structlog

from idgate.domain import (
    BarredPeople,
    Certification,
    ConfigurationError,
    IdentityDirectory,
    IdgateError,
    Outcome,
    PolicyContext,
    PolicyResult,
    Ruling,
    VerificationHistory,
    policy_set_digest,
)

from . import hookspecs
from .sdk import AnyPolicyDefinition, Policy, PolicyDefinition

log = structlog.get_logger("idgate.policies")

# Keys in `[policies.<name>]` that configure how idgate runs the policy rather than the policy itself.
_RUN_KEYS = frozenset({"enforce", "timeout_seconds", "on_error"})
DEFAULT_TIMEOUT_SECONDS = 2.0


class OnError(enum.StrEnum):
    """What a policy's failure or timeout does: deny (fail closed, the default) or abstain."""

    DENY = "deny"
    ABSTAIN = "abstain"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMode:
    """How idgate runs one policy: `[policies.<name>]` enforce, timeout_seconds, on_error."""

    enforced: bool = True
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    on_error: OnError = OnError.DENY


@dataclass(frozen=True, slots=True)
class LoadedPlugin:
    name: str
    distribution: str
    version: str


@dataclass(frozen=True, slots=True)
class PolicyCatalog:
    """Every policy the installed plugins offer, by name, and where each came from."""

    definitions: Mapping[str, AnyPolicyDefinition]
    plugins: Sequence[LoadedPlugin]
    # The plugin that offered each policy, by policy name.
    offered_by: Mapping[str, LoadedPlugin] = dataclasses.field(default_factory=dict)
    blocked: frozenset[str] = frozenset()


IN_PROCESS = "(registered in-process)"  # the distribution of plugins passed as objects (tests)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_catalog(
    pm: pluggy.PluginManager,
    plugins: Iterable[EntryPoint] | None = None,
    *,
    block: frozenset[str] = frozenset(),
    extra: Iterable[object] = (),
) -> PolicyCatalog:
    """Register every plugin (entry points, then `extra` objects, used by tests) and collect definitions.

    Unlike pluggy's own loader this refuses two plugins with one name instead of silently skipping one.
    """
    found = list(entry_points(group="idgate.policies") if plugins is None else plugins)
    loaded: dict[str, LoadedPlugin] = {}
    for ep in found:
        if ep.name in block:
            pm.set_blocked(ep.name)  # pluggy refuses it from now on, by name
            continue
        if ep.name in loaded:
            raise ConfigurationError(
                f"two installed plugins are both named {ep.name!r} in entry-point group idgate.policies; "
                "uninstall one of them."
            )
        try:
            plugin = ep.load()
        except Exception as exc:
            raise ConfigurationError(
                f"policy plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        pm.register(plugin, name=ep.name)
        dist = ep.dist
        loaded[ep.name] = LoadedPlugin(ep.name, dist.name if dist else "?", dist.version if dist else "?")
    for plugin in extra:
        name = pm.register(plugin)
        if name is not None:
            loaded[name] = LoadedPlugin(name, IN_PROCESS, "")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"a policy plugin implements an unknown hook: {exc}") from exc

    definitions: dict[str, AnyPolicyDefinition] = {}
    offered_by: dict[str, LoadedPlugin] = {}
    # Each implementation called on its own (not one hook call) to know which plugin offered what.
    for impl in pm.hook.idgate_policy_definitions.get_hookimpls():
        offered: list[object] = list(cast("Iterable[object]", impl.function()))
        for definition in offered:
            if not isinstance(definition, PolicyDefinition):
                raise ConfigurationError(
                    f"policy plugin {impl.plugin_name!r} returned {type(definition).__name__} instead of "
                    "PolicyDefinition."
                )
            if definition.name in definitions:
                raise ConfigurationError(
                    f"policy {definition.name!r} is offered by two plugins; uninstall one of them."
                )
            definitions[definition.name] = definition
            offered_by[definition.name] = loaded.get(
                impl.plugin_name, LoadedPlugin(impl.plugin_name, "?", "?")
            )
    return PolicyCatalog(
        definitions=definitions,
        plugins=tuple(loaded.values()),
        offered_by=offered_by,
        blocked=frozenset(ep.name for ep in found if ep.name in block),
    )


@dataclass(frozen=True, slots=True)
class ConfiguredPolicy:
    definition: AnyPolicyDefinition
    options: Any
    policy: Policy
    mode: RunMode = RunMode()
    plugin: LoadedPlugin | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def enforced(self) -> bool:
        return self.mode.enforced

    @property
    def timeout_ns(self) -> float:
        return self.mode.timeout_seconds * 1e9

    def described(self) -> dict[str, object]:
        """Everything that makes this policy decide as it does (for the policy-set digest)."""
        return {
            "name": self.name,
            "version": self.definition.version,
            "distribution": self.plugin.distribution if self.plugin else "?",
            "options": _as_mapping(self.options),
            "enforce": self.mode.enforced,
            "timeout_seconds": self.mode.timeout_seconds,
            "on_error": self.mode.on_error.value,
        }


def configure(
    catalog: PolicyCatalog, enabled: Sequence[str], options: Mapping[str, Mapping[str, Any]]
) -> list[ConfiguredPolicy]:
    """Build every enabled policy with its options (the defaults where none are given), validating them.

    Only `enabled` decides what runs; options for a policy that is not enabled are refused, so that
    configuring one policy can never switch another on or off.
    """
    for name in options:
        if name not in enabled:
            raise ConfigurationError(
                f"[policies.{name}] sets options for a policy that is not enabled; add it to "
                "[policies] enabled, or remove the table."
            )
    configured = []
    for name in enabled:
        definition = catalog.definitions.get(name)
        if definition is None:
            if name in catalog.blocked:
                raise ConfigurationError(
                    f"policy {name!r} is enabled but its plugin is blocked ([policies] block); "
                    "remove it from one of the two lists."
                )
            known = ", ".join(sorted(catalog.definitions)) or "none"
            raise ConfigurationError(
                f"unknown policy {name!r} in [policies] enabled; installed policies: {known}. "
                "Fix the name or install the plugin that provides it."
            )
        raw = options.get(name, {})
        mode = _run_mode(name, raw)
        parsed = _parse_options(definition, {k: v for k, v in raw.items() if k not in _RUN_KEYS})
        configured.append(
            ConfiguredPolicy(definition, parsed, definition.build(parsed), mode, catalog.offered_by.get(name))
        )
    return configured


def _run_mode(name: str, raw: Mapping[str, Any]) -> RunMode:
    enforced = raw.get("enforce", True)
    if not isinstance(enforced, bool):
        raise ConfigurationError(f"[policies.{name}] enforce must be true or false.")
    timeout = raw.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 60:
        raise ConfigurationError(f"[policies.{name}] timeout_seconds must be a number of seconds, 0 to 60.")
    on_error = raw.get("on_error", OnError.DENY.value)
    if on_error not in {e.value for e in OnError}:
        raise ConfigurationError(f'[policies.{name}] on_error must be "deny" or "abstain".')
    return RunMode(enforced=enforced, timeout_seconds=float(timeout), on_error=OnError(on_error))


def _parse_options(definition: AnyPolicyDefinition, raw: Mapping[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(definition.options)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigurationError(
            f"[policies.{definition.name}] has unknown option(s) {', '.join(unknown)}; "
            f"known options: {', '.join(sorted(fields | _RUN_KEYS))}."
        )
    try:
        return msgspec.convert(dict(raw), definition.options)
    except (msgspec.ValidationError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"[policies.{definition.name}] {exc}") from exc


class PluginPolicyEvaluator:
    """Implements the PolicyEvaluator port: runs each configured policy in isolation, under its own
    timeout, the async ones concurrently, and fails closed unless a policy is configured to abstain."""

    def __init__(self, policies: Sequence[ConfiguredPolicy]) -> None:
        self._policies = tuple(policies)
        # What each evaluation reads of a policy, looked up once here rather than per decision.
        self._plan = tuple(
            (p, p.policy, p.name, p.definition.version, p.mode.enforced, p.timeout_ns) for p in self._policies
        )
        self._policy_set = policy_set_digest(p.described() for p in self._policies)
        if not any(p.enforced for p in self._policies):
            log.warning(
                "no_enforced_policy",
                enabled=",".join(p.name for p in self._policies) or "none",
                consequence="every verification is allowed",
            )

    @property
    def policy_set(self) -> str:
        return self._policy_set

    @property
    def enabled(self) -> Sequence[str]:
        return tuple(p.name for p in self._policies)

    @property
    def policies(self) -> Sequence[ConfiguredPolicy]:
        return self._policies

    async def evaluate(self, certification: Certification, context: PolicyContext) -> Sequence[PolicyResult]:
        """Each policy's result, in configured order. A failure of idgate's own ports that a policy
        called is raised as it is, even if the policy caught it: the store, not the person, failed,
        so nothing may be decided."""
        watch = _PortWatch()
        context = watch.wrap(context)
        results: list[PolicyResult | None] = [None] * len(self._policies)
        pending: list[tuple[int, ConfiguredPolicy, Awaitable[object], int]] = []
        for i, (configured, policy, name, version, enforced, timeout_ns) in enumerate(self._plan):
            # Sync policies run here and now; an async one's coroutine is collected to run with the rest.
            started = time.perf_counter_ns()
            try:
                value = policy(certification, context)
                if inspect.iscoroutine(value):
                    # Its first step runs now, as a sync policy would: one that needs no I/O (nothing
                    # to wait for) finishes here, without a task; the rest go on concurrently below.
                    try:
                        yielded = value.send(None)
                    except StopIteration as done:
                        value = done.value
                    else:
                        pending.append((i, configured, _resumed(value, yielded), started))
                        continue
                elif inspect.isawaitable(value):
                    pending.append((i, configured, value, started))
                    continue
            except Exception as exc:  # noqa: BLE001 - any failure of a plugin must count as an error
                results[i] = self._failed(configured, exc, watch, started)
                continue
            elapsed_ns = time.perf_counter_ns() - started
            if type(value) is Ruling and elapsed_ns <= timeout_ns:  # the common case, kept short
                results[i] = PolicyResult(
                    policy=name,
                    version=version,
                    outcome=value.outcome,
                    code=value.code,
                    message=value.message,
                    enforced=enforced,
                    duration_us=elapsed_ns // 1000,
                )
            else:
                results[i] = self._settled(configured, value, started)
        if len(pending) == 1:
            i, configured, awaitable, started = pending[0]
            results[i] = await self._awaited(configured, awaitable, watch, started)
        elif pending:
            settled = await asyncio.gather(*(self._awaited(c, a, watch, t) for _, c, a, t in pending))
            for (i, *_), result in zip(pending, settled, strict=True):
                results[i] = result
        if watch.failure is not None:
            raise watch.failure
        return [r for r in results if r is not None]

    async def _awaited(
        self, configured: ConfiguredPolicy, awaitable: Awaitable[object], watch: _PortWatch, started: int
    ) -> PolicyResult:
        try:
            async with asyncio.timeout(configured.mode.timeout_seconds):
                value = await awaitable
        except TimeoutError:
            log.error(
                "policy_timed_out", policy=configured.name, timeout_seconds=configured.mode.timeout_seconds
            )
            return self._result(configured, _errored(configured, "policy_timeout", "timed out"), started)
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin must count as an error
            return self._failed(configured, exc, watch, started)
        return self._settled(configured, value, started)

    def _failed(
        self, configured: ConfiguredPolicy, exc: Exception, watch: _PortWatch, started: int
    ) -> PolicyResult:
        if isinstance(exc, IdgateError) and exc is watch.failure:
            raise exc
        # Only the type is logged: an exception message may quote the person's data.
        log.error("policy_failed", policy=configured.name, error_type=type(exc).__name__)
        return self._result(configured, _errored(configured, "policy_error", "failed"), started)

    def _settled(self, configured: ConfiguredPolicy, value: object, started: int) -> PolicyResult:
        """The result of a policy that returned `value`: its Ruling, unless it returned something
        else or took longer than its timeout. (`evaluate` inlines the common case of this.)"""
        if not isinstance(value, Ruling):
            log.error("policy_bad_return", policy=configured.name, returned=type(value).__name__)
            value = _errored(configured, "policy_error", "returned no Ruling")
        if time.perf_counter_ns() - started > configured.timeout_ns:
            # A sync policy cannot be interrupted; one that overran is held to its timeout afterwards.
            log.error(
                "policy_timed_out", policy=configured.name, timeout_seconds=configured.mode.timeout_seconds
            )
            value = _errored(configured, "policy_timeout", "timed out")
        return self._result(configured, value, started)

    @staticmethod
    def _result(configured: ConfiguredPolicy, ruling: Ruling, started: int) -> PolicyResult:
        return PolicyResult(
            policy=configured.name,
            version=configured.definition.version,
            outcome=ruling.outcome,
            code=ruling.code,
            message=ruling.message,
            enforced=configured.enforced,
            duration_us=(time.perf_counter_ns() - started) // 1000,
        )


def _errored(configured: ConfiguredPolicy, code: str, what: str) -> Ruling:
    """The ruling of a policy that failed: `error`, which denies, or an abstention when configured."""
    if configured.mode.on_error is OnError.ABSTAIN:
        return Ruling(
            outcome=Outcome.ABSTAIN, code=code, message=f"the policy {what}; it abstains (on_error)"
        )
    return Ruling(outcome=Outcome.ERROR, code=code, message=f"the policy {what}")


@types.coroutine
def _resumed(coroutine: Coroutine[Any, Any, object], yielded: Any) -> Generator[Any, Any, object]:
    """The rest of a coroutine whose first step already ran and yielded `yielded` (what asyncio's
    tasks do for Python 3.12's eager tasks): hands that to the task awaiting us, then relays every
    value and exception (a timeout's cancellation included) between the task and the coroutine."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:  # noqa: BLE001 - relayed into the coroutine, which decides
            try:
                yielded = coroutine.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                yielded = coroutine.send(sent)
            except StopIteration as done:
                return done.value


class _PortWatch:
    """The ports as policies see them: each remembers the first failure of the port itself."""

    def __init__(self) -> None:
        self.failure: IdgateError | None = None

    def wrap(self, context: PolicyContext) -> PolicyContext:
        return PolicyContext(
            subject=context.subject,
            now=context.now,
            identities=_WatchedDirectory(context.identities, self) if context.identities else None,
            history=_WatchedHistory(context.history, self) if context.history else None,
            barred=_WatchedBarred(context.barred, self) if context.barred else None,
            claims=context.claims,
        )

    def saw(self, exc: IdgateError) -> None:
        self.failure = self.failure or exc


class _WatchedDirectory:
    __slots__ = ("_directory", "_watch")

    def __init__(self, directory: IdentityDirectory, watch: _PortWatch) -> None:
        self._directory, self._watch = directory, watch

    async def subjects_with_ci(self, ci: str) -> Sequence[str]:
        try:
            return await self._directory.subjects_with_ci(ci)
        except IdgateError as exc:
            self._watch.saw(exc)
            raise

    async def subjects_with_di(self, di: str) -> Sequence[str]:
        try:
            return await self._directory.subjects_with_di(di)
        except IdgateError as exc:
            self._watch.saw(exc)
            raise


class _WatchedHistory:
    __slots__ = ("_history", "_watch")

    def __init__(self, history: VerificationHistory, watch: _PortWatch) -> None:
        self._history, self._watch = history, watch

    async def decisions_of_person(self, *, ci: str | None, di: str | None, since: datetime) -> int:
        try:
            return await self._history.decisions_of_person(ci=ci, di=di, since=since)
        except IdgateError as exc:
            self._watch.saw(exc)
            raise

    async def decisions_of_subject(self, subject: str, *, since: datetime) -> int:
        try:
            return await self._history.decisions_of_subject(subject, since=since)
        except IdgateError as exc:
            self._watch.saw(exc)
            raise


class _WatchedBarred:
    __slots__ = ("_barred", "_watch")

    def __init__(self, barred: BarredPeople, watch: _PortWatch) -> None:
        self._barred, self._watch = barred, watch

    async def is_barred(self, ci: str) -> bool:
        try:
            return await self._barred.is_barred(ci)
        except IdgateError as exc:
            self._watch.saw(exc)
            raise


def _as_mapping(options: Any) -> Mapping[str, object]:
    return msgspec.to_builtins(options) if dataclasses.is_dataclass(options) else {}
