"""The plugin machinery: discovery through entry points, option validation, isolation of failures."""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import sys
import time
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pytest
import structlog

from idgate.domain import (
    Claims,
    ConfigurationError,
    Outcome,
    PolicyContext,
    Ruling,
    StoreUnavailable,
    Verdict,
    combine,
)
from idgate.policies import ENTRY_POINT_GROUP, PolicyDefinition, hookimpl, hookspecs
from idgate.policies.engine import (
    ConfiguredPolicy,
    PluginPolicyEvaluator,
    PolicyCatalog,
    configure,
    load_catalog,
    new_plugin_manager,
)
from idgate.testing import InMemoryBlocklist, InMemoryVerificationHistory
from tests.fakes import a_certification


def configure_enabled(catalog: PolicyCatalog, config: dict[str, dict[str, Any]]) -> list[ConfiguredPolicy]:
    """Enable exactly the policies named in `config`, with those options."""
    return configure(catalog, list(config), config)


ROOT = Path(__file__).resolve().parents[2]
CONTEXT = PolicyContext(subject="u", now=datetime(2026, 11, 23, tzinfo=UTC))


@dataclass(frozen=True)
class NoOptions:
    pass


def plugin_offering(*definitions: PolicyDefinition[Any]) -> object:
    class Plugin:
        @hookimpl
        def idgate_policy_definitions(self) -> list[PolicyDefinition[Any]]:
            return list(definitions)

    return Plugin()


def simple(name: str, ruling: Any, version: str = "1") -> PolicyDefinition[Any]:
    return PolicyDefinition(name=name, version=version, options=NoOptions, build=lambda _o: ruling)


def evaluator(*plugins: object, config: dict[str, dict[str, Any]]) -> PluginPolicyEvaluator:
    catalog = load_catalog(new_plugin_manager(), [], extra=plugins)
    return PluginPolicyEvaluator(configure_enabled(catalog, config))


def test_hook_idgate_policy_definitions_loads_the_builtin_through_its_entry_point() -> None:
    [ep] = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "age_limit"]
    catalog = load_catalog(new_plugin_manager(), [ep])
    assert set(catalog.definitions) == {"age_limit"}
    assert catalog.plugins[0].distribution == "idgate"


def test_without_the_entry_point_the_builtin_does_not_exist() -> None:
    catalog = load_catalog(new_plugin_manager(), [])
    with pytest.raises(ConfigurationError, match="unknown policy 'age_limit'"):
        configure_enabled(catalog, {"age_limit": {}})


def test_a_third_party_plugin_loads_the_same_way(tmp_path: Path) -> None:
    module = tmp_path / "acme_policies.py"
    module.write_text(
        "from dataclasses import dataclass\n"
        "from idgate.policies import PolicyDefinition, Ruling, Outcome, hookimpl\n"
        "@dataclass(frozen=True)\nclass Options:\n    allowed_providers: tuple[str, ...] = ('danal',)\n"
        "def build(o):\n"
        "    def evaluate(c, ctx):\n"
        "        ok = c.provider in o.allowed_providers\n"
        "        return Ruling(outcome=Outcome.ALLOW if ok else Outcome.REVIEW, code='provider')\n"
        "    return evaluate\n"
        "@hookimpl\ndef idgate_policy_definitions():\n"
        "    return [PolicyDefinition(name='provider_allowlist', version='0.1', options=Options, build=build)]\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        ep = EntryPoint(name="acme", value="acme_policies", group=ENTRY_POINT_GROUP)
        catalog = load_catalog(new_plugin_manager(), [ep])
        [policy] = configure_enabled(catalog, {"provider_allowlist": {"allowed_providers": ["kcp_v2"]}})
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("acme_policies", None)
    assert policy.policy(a_certification(provider="danal"), CONTEXT) == Ruling(
        outcome=Outcome.REVIEW, code="provider"
    )


def test_two_plugins_with_one_name_are_refused() -> None:
    ep = EntryPoint(name="age_limit", value="idgate.policies.builtin.age_limit", group=ENTRY_POINT_GROUP)
    with pytest.raises(ConfigurationError, match="two installed plugins are both named 'age_limit'"):
        load_catalog(new_plugin_manager(), [ep, ep])


def test_two_policies_with_one_name_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="offered by two plugins"):
        load_catalog(
            new_plugin_manager(),
            [],
            extra=[plugin_offering(simple("x", None)), plugin_offering(simple("x", None))],
        )


def test_a_plugin_that_fails_to_import_is_named() -> None:
    ep = EntryPoint(name="broken", value="no_such_module_here", group=ENTRY_POINT_GROUP)
    with pytest.raises(ConfigurationError, match=r"'broken'.*failed to import"):
        load_catalog(new_plugin_manager(), [ep])


def test_a_plugin_implementing_an_unknown_hook_is_refused() -> None:
    class Typo:
        @hookimpl
        def idgate_policy_definition(self) -> list[Any]:  # missing "s"
            return []

    with pytest.raises(ConfigurationError, match="unknown hook"):
        load_catalog(new_plugin_manager(), [], extra=[Typo()])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_age": "19"}, "Expected `int"),
        ({"min_age": 19, "maximum": 3}, "unknown option.*maximum"),
        ({"method": "korean"}, "Invalid enum value 'korean'"),
        ({"min_age": -1}, "between 0 and 150"),
        ({"enforce": "yes"}, "enforce must be true or false"),
    ],
)
def test_bad_options_stop_startup_with_a_clear_message(options: dict[str, Any], message: str) -> None:
    catalog = load_catalog(new_plugin_manager())
    with pytest.raises(ConfigurationError, match=message):
        configure_enabled(catalog, {"age_limit": options})


async def test_a_failing_or_misbehaving_policy_fails_closed_without_taking_the_others_down() -> None:
    def boom(certification: Any, context: Any) -> Ruling:
        raise RuntimeError("홍길동 01012345678")  # an exception message may carry personal data

    async def async_allow(certification: Any, context: Any) -> Ruling:
        return Ruling(outcome=Outcome.ALLOW, code="ok")

    policies = evaluator(
        plugin_offering(
            simple("boom", boom),
            simple("junk", lambda c, x: "allow"),
            simple("fine", async_allow),
        ),
        config={"boom": {}, "junk": {}, "fine": {}},
    )
    results = {r.policy: r for r in await policies.evaluate(a_certification(), CONTEXT)}
    assert results["boom"].outcome is Outcome.ERROR
    assert "홍길동" not in results["boom"].message
    assert results["junk"].outcome is Outcome.ERROR
    assert results["fine"].outcome is Outcome.ALLOW
    assert combine(results.values()) is Verdict.DENY


async def test_shadow_policies_are_recorded_but_do_not_decide() -> None:
    deny = Ruling(outcome=Outcome.DENY, code="no")
    policies = evaluator(
        plugin_offering(simple("strict", lambda c, x: deny)), config={"strict": {"enforce": False}}
    )
    [result] = await policies.evaluate(a_certification(), CONTEXT)
    assert result.outcome is Outcome.DENY
    assert not result.enforced
    assert combine([result]) is Verdict.ALLOW


class BrokenDirectory:
    """An identity directory whose database is down."""

    async def subjects_with_ci(self, ci: str) -> list[str]:
        raise StoreUnavailable("the database is unavailable")

    async def subjects_with_di(self, di: str) -> list[str]:
        raise StoreUnavailable("the database is unavailable")


async def test_a_failure_of_idgates_own_store_is_raised_not_decided() -> None:
    async def swallows_errors(certification: Any, context: PolicyContext) -> Ruling:
        try:
            await context.identities.subjects_with_ci("CI")  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - a careless plugin: idgate must not trust it to re-raise
            return Ruling(outcome=Outcome.ALLOW, code="looked_fine")
        return Ruling(outcome=Outcome.ALLOW, code="ok")

    policies = evaluator(
        plugin_offering(simple("careless", swallows_errors), simple("other", lambda c, x: None)),
        config={"careless": {}, "other": {}},
    )
    context = dataclasses.replace(CONTEXT, identities=BrokenDirectory())
    with pytest.raises(StoreUnavailable):
        await policies.evaluate(a_certification(), context)
    # The built-in that needs the directory: the same.
    builtin = PluginPolicyEvaluator(
        configure_enabled(load_catalog(new_plugin_manager()), {"duplicate_identity": {}})
    )
    with pytest.raises(StoreUnavailable):
        await builtin.evaluate(a_certification(), context)


async def test_a_domain_error_raised_by_the_policy_itself_fails_closed() -> None:
    def confused(certification: Any, context: Any) -> Ruling:
        raise StoreUnavailable("a plugin pretending the store is down")

    [result] = await evaluator(
        plugin_offering(simple("confused", confused)), config={"confused": {}}
    ).evaluate(a_certification(), CONTEXT)
    assert (result.outcome, result.code) == (Outcome.ERROR, "policy_error")


def test_options_never_enable_a_policy() -> None:
    catalog = load_catalog(new_plugin_manager())
    with pytest.raises(ConfigurationError, match="not enabled"):
        configure(catalog, ["age_limit"], {"duplicate_identity": {"on_bound": "review"}})
    assert [p.name for p in configure(catalog, ["duplicate_identity", "age_limit"], {})] == [
        "duplicate_identity",
        "age_limit",
    ]


def test_the_policy_set_digest_follows_options_and_enforcement() -> None:
    catalog = load_catalog(new_plugin_manager())

    def digest(config: dict[str, dict[str, Any]]) -> str:
        return PluginPolicyEvaluator(configure_enabled(catalog, config)).policy_set

    assert digest({"age_limit": {}}) == digest({"age_limit": {"min_age": 19}})  # defaults are explicit
    assert digest({"age_limit": {"min_age": 19}}) != digest({"age_limit": {"min_age": 20}})
    assert digest({"age_limit": {}}) != digest({"age_limit": {"enforce": False}})


@pytest.mark.parametrize(
    ("birth", "options", "outcome"),
    [
        (date(2007, 11, 23), {"min_age": 19}, Outcome.ALLOW),  # 19th birthday today (KST)
        (date(2007, 11, 24), {"min_age": 19}, Outcome.DENY),  # tomorrow
        (date(2007, 12, 31), {"min_age": 19, "method": "year"}, Outcome.ALLOW),  # 연 나이 19 all year
        (date(2007, 12, 31), {"min_age": 19}, Outcome.DENY),
    ],
)
def test_age_limit(birth: date, options: dict[str, Any], outcome: Outcome) -> None:
    [policy] = configure_enabled(load_catalog(new_plugin_manager()), {"age_limit": options})
    ruling = policy.policy(
        a_certification(birth_date=birth),
        PolicyContext(subject=None, now=datetime(2026, 11, 22, 15, tzinfo=UTC)),
    )
    assert isinstance(ruling, Ruling)
    assert (ruling.outcome, ruling.code) == (outcome, "age_ok" if outcome is Outcome.ALLOW else "under_age")


# ---- meta-tests -----------------------------------------------------------------------------------
def test_every_hook_has_a_test_named_for_it() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("idgate_")]
    assert hooks
    tests = [name for name in globals() if name.startswith("test_hook_")]
    for hook in hooks:
        assert any(hook in t for t in tests), f"no test_hook_{hook}…"


def test_every_builtin_policy_module_is_declared_as_an_entry_point() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        ENTRY_POINT_GROUP
    ]
    modules = {p.stem for p in (ROOT / "policies" / "builtin").glob("*.py") if p.stem != "__init__"}
    assert {v.rsplit(".", 1)[-1] for v in declared.values()} == modules


def test_nothing_imports_a_builtin_policy_directly() -> None:
    for path in ROOT.glob("*/**/*.py"):
        if "tests" in path.parts or "build" in path.parts or ".venv" in path.parts or "builtin" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom | ast.Import):
                names = (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                )
                assert not any("builtin" in n for n in names), f"{path} imports a built-in policy"


def test_every_package_folder_is_installed() -> None:
    """A new subfolder with an __init__.py must be listed in [tool.setuptools] packages, or the wheel lacks it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = config["package-dir"]

    def folder(package: str) -> str:
        parent, _, leaf = package.rpartition(".")
        return package_dir.get(package) or f"{folder(parent)}/{leaf}"

    installed = {folder(p) for p in config["packages"]}
    on_disk = {
        str(init.parent.relative_to(ROOT))
        for layer in ("domain", "adapters", "policies", "entrypoints", "sandbox", "package_root")
        for init in (ROOT / layer).rglob("__init__.py")
    }
    assert on_disk == installed


# ---- timeouts, errors, concurrency (issue 10) ------------------------------------------------
ALLOW = Ruling(outcome=Outcome.ALLOW, code="ok")


async def test_an_async_policy_past_its_timeout_is_cancelled_and_fails_closed() -> None:
    cancelled = asyncio.Event()

    async def hangs(certification: Any, context: Any) -> Ruling:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return ALLOW

    policies = evaluator(
        plugin_offering(simple("hangs", hangs), simple("fine", lambda c, x: ALLOW)),
        config={"hangs": {"timeout_seconds": 0.05}, "fine": {}},
    )
    results = {r.policy: r for r in await policies.evaluate(a_certification(), CONTEXT)}
    assert (results["hangs"].outcome, results["hangs"].code) == (Outcome.ERROR, "policy_timeout")
    assert cancelled.is_set()
    assert results["fine"].outcome is Outcome.ALLOW
    assert combine(results.values()) is Verdict.DENY


async def test_a_sync_policy_that_overran_its_timeout_is_held_to_it_afterwards() -> None:
    def slow(certification: Any, context: Any) -> Ruling:
        time.sleep(0.06)  # a sync policy cannot be interrupted
        return ALLOW

    [result] = await evaluator(
        plugin_offering(simple("slow", slow)), config={"slow": {"timeout_seconds": 0.01}}
    ).evaluate(a_certification(), CONTEXT)
    assert (result.outcome, result.code) == (Outcome.ERROR, "policy_timeout")
    assert result.duration_us >= 60_000


@pytest.mark.parametrize("failure", ["raises", "times_out", "returns_junk"])
async def test_on_error_abstain_turns_a_failure_into_an_abstention(failure: str) -> None:
    async def fails(certification: Any, context: Any) -> object:
        if failure == "raises":
            raise RuntimeError("broken")
        if failure == "times_out":
            await asyncio.sleep(10)
        return "junk"

    config = {"fails": {"on_error": "abstain", "timeout_seconds": 0.05}}
    [result] = await evaluator(plugin_offering(simple("fails", fails)), config=config).evaluate(
        a_certification(), CONTEXT
    )
    assert result.outcome is Outcome.ABSTAIN
    assert result.code == ("policy_timeout" if failure == "times_out" else "policy_error")
    assert "abstains" in result.message
    assert combine([result]) is Verdict.ALLOW


async def test_async_policies_run_concurrently() -> None:
    # Each waits for the other: run one after the other, the first would time out.
    first_started, second_started = asyncio.Event(), asyncio.Event()

    async def first(certification: Any, context: Any) -> Ruling:
        first_started.set()
        await second_started.wait()
        return ALLOW

    async def second(certification: Any, context: Any) -> Ruling:
        second_started.set()
        await first_started.wait()
        return ALLOW

    policies = evaluator(
        plugin_offering(simple("first", first), simple("second", second), simple("sync", lambda c, x: ALLOW)),
        config={"first": {"timeout_seconds": 1}, "second": {"timeout_seconds": 1}, "sync": {}},
    )
    results = await policies.evaluate(a_certification(), CONTEXT)
    assert [(r.policy, r.outcome) for r in results] == [
        ("first", Outcome.ALLOW),
        ("second", Outcome.ALLOW),
        ("sync", Outcome.ALLOW),
    ]  # in configured order, whatever finished first


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"timeout_seconds": 0}, "timeout_seconds must be a number of seconds"),
        ({"timeout_seconds": "2"}, "timeout_seconds must be a number of seconds"),
        ({"timeout_seconds": True}, "timeout_seconds must be a number of seconds"),
        ({"on_error": "allow"}, 'on_error must be "deny" or "abstain"'),
    ],
)
def test_bad_run_keys_are_refused(run: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        configure_enabled(load_catalog(new_plugin_manager()), {"age_limit": run})


def test_the_policy_set_digest_covers_how_each_policy_runs_and_where_it_came_from() -> None:
    catalog = load_catalog(new_plugin_manager())

    def digest(config: dict[str, dict[str, Any]]) -> str:
        return PluginPolicyEvaluator(configure_enabled(catalog, config)).policy_set

    base = digest({"age_limit": {}})
    assert base == digest({"age_limit": {"timeout_seconds": 2.0, "on_error": "deny", "enforce": True}})
    assert base != digest({"age_limit": {"timeout_seconds": 1.0}})
    assert base != digest({"age_limit": {"on_error": "abstain"}})
    [configured] = configure_enabled(catalog, {"age_limit": {}})
    assert configured.described()["distribution"] == "idgate"
    assert configured.plugin is not None
    forked = dataclasses.replace(configured.plugin, distribution="forked-idgate")
    same_elsewhere = dataclasses.replace(configured, plugin=forked)
    assert PluginPolicyEvaluator([same_elsewhere]).policy_set != base


def test_a_blocked_plugin_is_not_loaded_and_enabling_its_policy_says_so() -> None:
    catalog = load_catalog(new_plugin_manager(), block=frozenset({"age_limit"}))
    assert "age_limit" not in catalog.definitions
    assert "duplicate_identity" in catalog.definitions
    assert "age_limit" in catalog.blocked
    with pytest.raises(ConfigurationError, match="its plugin is blocked"):
        configure_enabled(catalog, {"age_limit": {}})


def test_startup_warns_loudly_when_no_policy_is_enforced() -> None:
    catalog = load_catalog(new_plugin_manager())
    with structlog.testing.capture_logs() as logs:
        PluginPolicyEvaluator(configure_enabled(catalog, {"age_limit": {"enforce": False}}))
        PluginPolicyEvaluator(configure_enabled(catalog, {"age_limit": {}}))
    warnings = [e for e in logs if e["event"] == "no_enforced_policy"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["enabled"] == "age_limit"


async def test_each_result_records_how_long_its_policy_took() -> None:
    async def takes_a_while(certification: Any, context: Any) -> Ruling:
        await asyncio.sleep(0.02)
        return ALLOW

    [result] = await evaluator(
        plugin_offering(simple("slowish", takes_a_while)), config={"slowish": {}}
    ).evaluate(a_certification(), CONTEXT)
    assert result.duration_us >= 20_000


async def test_a_policy_sees_every_field_of_the_context_it_was_given() -> None:
    seen: list[PolicyContext] = []

    def looks(certification: Any, context: PolicyContext) -> Ruling:
        seen.append(context)
        return ALLOW

    given = PolicyContext(
        subject="acct-1",
        now=CONTEXT.now,
        identities=BrokenDirectory(),
        history=InMemoryVerificationHistory(),
        barred=InMemoryBlocklist(),
        claims=Claims(name="홍길동"),
    )
    await evaluator(plugin_offering(simple("looks", looks)), config={"looks": {}}).evaluate(
        a_certification(), given
    )
    [context] = seen
    for field in dataclasses.fields(PolicyContext):
        value = getattr(context, field.name)
        assert value is not None, f"{field.name} did not reach the policy"
        if field.name in {"identities", "history", "barred"}:
            assert value is not getattr(given, field.name)  # watched for the store's failures
        else:
            assert value == getattr(given, field.name)


async def test_async_policies_that_suspend_then_answer_or_fail_are_recorded_as_such() -> None:
    async def later(certification: Any, context: Any) -> Ruling:
        for _ in range(3):
            await asyncio.sleep(0)  # suspends: runs on as a task after its first step
        return Ruling(outcome=Outcome.REVIEW, code="later")

    async def fails_later(certification: Any, context: Any) -> Ruling:
        await asyncio.sleep(0)
        raise ValueError("after a suspension")

    async def at_once(certification: Any, context: Any) -> Ruling:
        return Ruling(outcome=Outcome.ALLOW, code="at_once")  # finishes in its first step

    policies = evaluator(
        plugin_offering(
            simple("later", later), simple("fails_later", fails_later), simple("at_once", at_once)
        ),
        config={"later": {}, "fails_later": {}, "at_once": {}},
    )
    results = await policies.evaluate(a_certification(), CONTEXT)
    assert [(r.policy, r.outcome, r.code) for r in results] == [
        ("later", Outcome.REVIEW, "later"),
        ("fails_later", Outcome.ERROR, "policy_error"),
        ("at_once", Outcome.ALLOW, "at_once"),
    ]
