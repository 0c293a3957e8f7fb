"""Loads policy plugins through entry points and runs the configured policies.

Built-in and third-party policies take the same path: entry point → pluggy registration →
`idgate_policy_definitions` → options validated against the definition → `build(options)`.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import msgspec
import pluggy
import structlog

from idgate.domain import (
    Certification,
    ConfigurationError,
    IdentityDirectory,
    IdgateError,
    Outcome,
    PolicyContext,
    PolicyResult,
    Ruling,
    policy_set_digest,
)

from . import hookspecs
from .sdk import AnyPolicyDefinition, Policy, PolicyDefinition

log = structlog.get_logger("idgate.policies")

# Keys in `[policies.<name>]` that configure how idgate runs the policy rather than the policy itself.
_RUN_KEYS = frozenset({"enforce"})


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
    loaded: list[LoadedPlugin] = []
    seen: set[str] = set()
    for ep in found:
        if ep.name in block:
            continue
        if ep.name in seen:
            raise ConfigurationError(
                f"two installed plugins are both named {ep.name!r} in entry-point group idgate.policies; "
                "uninstall one of them."
            )
        seen.add(ep.name)
        try:
            plugin = ep.load()
        except Exception as exc:
            raise ConfigurationError(
                f"policy plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        pm.register(plugin, name=ep.name)
        dist = ep.dist
        loaded.append(LoadedPlugin(ep.name, dist.name if dist else "?", dist.version if dist else "?"))
    for plugin in extra:
        pm.register(plugin)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise ConfigurationError(f"a policy plugin implements an unknown hook: {exc}") from exc

    definitions: dict[str, AnyPolicyDefinition] = {}
    for offered in pm.hook.idgate_policy_definitions():
        for definition in offered:
            if not isinstance(definition, PolicyDefinition):
                raise ConfigurationError(
                    f"a policy plugin returned {type(definition).__name__} instead of PolicyDefinition."
                )
            if definition.name in definitions:
                raise ConfigurationError(
                    f"policy {definition.name!r} is offered by two plugins; uninstall one of them."
                )
            definitions[definition.name] = definition
    return PolicyCatalog(definitions=definitions, plugins=tuple(loaded))


@dataclass(frozen=True, slots=True)
class ConfiguredPolicy:
    definition: AnyPolicyDefinition
    options: Any
    policy: Policy
    enforced: bool

    @property
    def name(self) -> str:
        return self.definition.name


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
            known = ", ".join(sorted(catalog.definitions)) or "none"
            raise ConfigurationError(
                f"unknown policy {name!r} in [policies] enabled; installed policies: {known}. "
                "Fix the name or install the plugin that provides it."
            )
        raw = options.get(name, {})
        enforced = raw.get("enforce", True)
        if not isinstance(enforced, bool):
            raise ConfigurationError(f"[policies.{name}] enforce must be true or false.")
        parsed = _parse_options(definition, {k: v for k, v in raw.items() if k not in _RUN_KEYS})
        configured.append(ConfiguredPolicy(definition, parsed, definition.build(parsed), enforced))
    return configured


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
    """Implements the PolicyEvaluator port: runs each configured policy in isolation, fails closed."""

    def __init__(self, policies: Sequence[ConfiguredPolicy]) -> None:
        self._policies = tuple(policies)
        self._policy_set = policy_set_digest(
            (p.name, p.definition.version, _as_mapping(p.options), p.enforced) for p in self._policies
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
        """Each policy's result. A failure of idgate's own ports that a policy called is raised as it is,
        even if the policy caught it: the store, not the person, failed, so nothing may be decided."""
        watched = _WatchedDirectory(context.identities) if context.identities is not None else None
        context = dataclasses.replace(context, identities=watched)
        results = [await self._run(p, certification, context, watched) for p in self._policies]
        if watched is not None and watched.failure is not None:
            raise watched.failure
        return results

    async def _run(
        self,
        configured: ConfiguredPolicy,
        certification: Certification,
        context: PolicyContext,
        watched: _WatchedDirectory | None,
    ) -> PolicyResult:
        started = time.perf_counter_ns()
        try:
            ruling = await _settle(configured.policy(certification, context))
        except IdgateError as exc:
            if watched is not None and exc is watched.failure:
                raise
            log.error("policy_failed", policy=configured.name, error_type=type(exc).__name__)
            ruling = Ruling(outcome=Outcome.ERROR, code="policy_error", message="the policy failed")
        except Exception as exc:  # noqa: BLE001 - any failure of a plugin must count as a deny
            # Only the type is logged: an exception message may quote the person's data.
            log.error("policy_failed", policy=configured.name, error_type=type(exc).__name__)
            ruling = Ruling(outcome=Outcome.ERROR, code="policy_error", message="the policy failed")
        if not isinstance(ruling, Ruling):
            log.error("policy_bad_return", policy=configured.name, returned=type(ruling).__name__)
            ruling = Ruling(
                outcome=Outcome.ERROR, code="policy_error", message="the policy returned no Ruling"
            )
        return PolicyResult(
            policy=configured.name,
            version=configured.definition.version,
            outcome=ruling.outcome,
            code=ruling.code,
            message=ruling.message,
            enforced=configured.enforced,
            duration_us=(time.perf_counter_ns() - started) // 1000,
        )


class _WatchedDirectory:
    """The IdentityDirectory port as policies see it: remembers the first failure of the port itself."""

    def __init__(self, directory: IdentityDirectory) -> None:
        self._directory = directory
        self.failure: IdgateError | None = None

    async def subjects_with_ci(self, ci: str) -> Sequence[str]:
        return await self._watch(self._directory.subjects_with_ci(ci))

    async def subjects_with_di(self, di: str) -> Sequence[str]:
        return await self._watch(self._directory.subjects_with_di(di))

    async def _watch(self, call: Awaitable[Sequence[str]]) -> Sequence[str]:
        try:
            return await call
        except IdgateError as exc:
            self.failure = self.failure or exc
            raise


async def _settle(value: object) -> object:
    """Await the value if the policy was async; typed `object` because plugins can return anything."""
    return await value if inspect.isawaitable(value) else value


def _as_mapping(options: Any) -> Mapping[str, object]:
    return msgspec.to_builtins(options) if dataclasses.is_dataclass(options) else {}
