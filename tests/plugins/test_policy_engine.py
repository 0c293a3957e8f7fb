"""The plugin machinery: discovery through entry points, option validation, isolation of failures."""

from __future__ import annotations

import ast
import dataclasses
import sys
import tomllib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pytest

from idgate.domain import (
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
        ({"min_age": "19"}, "Expected `int`"),
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
        for layer in ("domain", "adapters", "policies", "entrypoints", "sandbox")
        for init in (ROOT / layer).rglob("__init__.py")
    }
    assert on_disk == installed - {"package_root"}
