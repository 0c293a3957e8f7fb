"""Configuration: `idgate.toml` (from --config, IDGATE_CONFIG or ./idgate.toml), then IDGATE_* overrides.

Every key is declared here; an unknown key in the file or an unknown IDGATE_* variable is an error,
so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from idgate.domain import ConfigurationError

DEFAULT_DATA_DIR = Path(".idgate")
# Environment variables that are not IDGATE_<SECTION>_<KEY> overrides.
_NOT_OVERRIDES = frozenset({"IDGATE_CONFIG", "IDGATE_KEYRING", "IDGATE_LOG_LEVEL"})
BUILT_IN_POLICIES = ("age_limit", "duplicate_identity")


class _Section(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A config table: unknown keys are rejected."""


class PortOneSettings(_Section, frozen=True):
    url: str = "https://api.iamport.kr"
    imp_key: str = ""
    imp_secret: str = ""
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    attempts: int = 3
    backoff: float = 0.2
    max_connections: int = 100  # kept-alive connections to PortOne, at least the expected concurrency

    def __repr__(self) -> str:
        return f"PortOneSettings(url={self.url!r}, credentials={'set' if self.imp_key else 'missing'})"


class DatabaseSettings(_Section, frozen=True):
    url: str = f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR}/idgate.db"
    # "full": every commit is on disk before it is acknowledged; "normal": survives a crash of idgate,
    # not a power cut (docs/performance.md measures both).
    sqlite_synchronous: str = "full"
    # PostgreSQL: connections each worker keeps for verifications (several workers: N × (pool_size + 2)
    # must stay under the server's max_connections).
    pool_size: int = 10
    connect_timeout: float = 5.0  # seconds to get a connection; beyond it a request answers 503
    statement_timeout: float = 10.0  # seconds any one statement may take; beyond it 503


class KeyringSettings(_Section, frozen=True):
    path: str = f"{DEFAULT_DATA_DIR}/keyring.json"
    # The base64 of a keyring document, from IDGATE_KEYRING only (keys never sit in the config file);
    # it takes precedence over `path`.
    inline: str = ""

    def __repr__(self) -> str:
        return f"KeyringSettings(path={self.path!r}, inline={'set' if self.inline else 'unset'})"


class VerificationSettings(_Section, frozen=True):
    require_prepare: bool = True
    prepare_ttl_seconds: int = 900
    max_certification_age_seconds: int = 1800


class HttpSettings(_Section, frozen=True):
    cors_origins: list[str] = []
    allow_url: str = ""
    deny_url: str = ""
    demo_page: bool = False
    sandbox_url: str = ""
    # Seconds a request's body may take to arrive in full; a client that promises a body and sends it
    # slowly is answered 408 and disconnected instead of holding a connection.
    body_timeout_seconds: float = 10.0
    # Proxies whose X-Forwarded-For names the client (for the prepare limit and the access log).
    forwarded_allow_ips: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1"])
    # POST /certifications/prepare per client address and window, across all workers; 0: no limit.
    prepare_rate_limit: int = 60
    prepare_rate_window_seconds: int = 60


class RetentionSettings(_Section, frozen=True):
    """How long the rows that only serve replay protection are kept; decisions are never purged."""

    # Prepared merchant_uids, counted from their expiry (used or not).
    prepared_request_days: float = 1.0
    # Consumed imp_uids. At least `max_certification_age_seconds`: older certifications are refused
    # anyway, so a purged imp_uid still cannot be verified twice.
    consumed_certification_days: float = 30.0
    # How often `idgate serve` purges by itself; 0 leaves it to `idgate db purge`.
    purge_interval_seconds: int = 3600


class AuditSettings(_Section, frozen=True):
    """The decision log's signed checkpoints."""

    # The Ed25519 key that signs checkpoints (mode 0600; `idgate keys generate` makes it). Apart from the
    # keyring on purpose: whoever can rewrite the database should not hold it.
    signing_key_path: str = f"{DEFAULT_DATA_DIR}/log-signing-key.pem"
    # The log's name in every checkpoint (C2SP "origin"): one word, e.g. idgate.example.com/decisions.
    log_name: str = "idgate/decisions"
    checkpoint_every: int = 1000  # decisions between two checkpoints at most
    checkpoint_interval_seconds: int = 60  # a new checkpoint at least this often while decisions come in


class ReviewsSettings(_Section, frozen=True):
    """The cases `review` verdicts open, for tokens of role `reviewer`."""

    # A case nobody resolved within this many seconds of its opening expires, which denies it and
    # discards the identity it kept; `serve` closes such cases by itself.
    expire_after_seconds: int = 7 * 86400


class PoliciesSettings(_Section, frozen=True):
    """`enabled` alone decides which policies run; `[policies.<name>]` tables only set their options."""

    enabled: list[str] = msgspec.field(default_factory=lambda: list(BUILT_IN_POLICIES))
    # Installed plugins (entry-point names, as `idgate policies list` shows them) never to load.
    block: list[str] = msgspec.field(default_factory=list)
    options: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class Settings(_Section, frozen=True):
    portone: PortOneSettings = PortOneSettings()
    database: DatabaseSettings = DatabaseSettings()
    keyring: KeyringSettings = KeyringSettings()
    verification: VerificationSettings = VerificationSettings()
    http: HttpSettings = HttpSettings()
    retention: RetentionSettings = RetentionSettings()
    audit: AuditSettings = AuditSettings()
    reviews: ReviewsSettings = ReviewsSettings()
    policies: PoliciesSettings = PoliciesSettings()


_SECTIONS: dict[str, type[_Section]] = {
    "portone": PortOneSettings,
    "database": DatabaseSettings,
    "keyring": KeyringSettings,
    "verification": VerificationSettings,
    "http": HttpSettings,
    "retention": RetentionSettings,
    "audit": AuditSettings,
    "reviews": ReviewsSettings,
    "policies": PoliciesSettings,
}


def env_overrides() -> dict[str, tuple[str, str]]:
    """IDGATE_<SECTION>_<KEY> → (section, key), for every setting."""
    return {
        f"IDGATE_{section.upper()}_{name.upper()}": (section, name)
        for section, struct in _SECTIONS.items()
        for name in struct.__struct_fields__
        if (section, name) not in {("keyring", "inline"), ("policies", "options")}
    }


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    if explicit is not None:
        return explicit
    if environ.get("IDGATE_CONFIG"):
        return Path(environ["IDGATE_CONFIG"])
    default = Path("idgate.toml")
    return default if default.exists() else None


def load_settings(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = config_path(explicit, environ)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text("utf-8"))
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"config file {path} does not exist; create one with `idgate init`."
            ) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"config file {path} cannot be read ({type(exc).__name__}).") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from exc
    if "inline" in raw.get("keyring", {}):
        raise ConfigurationError(
            f"config file {path}: keys do not belong in the config file; set IDGATE_KEYRING to the "
            "base64 of the keyring file instead, or point [keyring] path at the file."
        )
    _policy_options_apart(raw, path)
    _apply_env(raw, environ)
    if environ.get("IDGATE_KEYRING"):
        raw.setdefault("keyring", {})["inline"] = environ["IDGATE_KEYRING"]
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        where = f"config file {path}" if path else "configuration"
        raise ConfigurationError(f"{where}: {_readable(exc)}") from exc
    _check_policies(settings.policies)
    _check_limits(settings)
    return settings


def _check_limits(settings: Settings) -> None:
    """Values that parse but cannot work, named before anything starts."""
    retention, verification, http = settings.retention, settings.verification, settings.http
    if retention.consumed_certification_days * 86400 < verification.max_certification_age_seconds:
        raise ConfigurationError(
            "[retention] consumed_certification_days is shorter than [verification] "
            "max_certification_age_seconds: an imp_uid could be purged while PortOne's certification is "
            "still fresh enough to be verified again. Keep consumed imp_uids at least that long."
        )
    if retention.prepared_request_days < 0 or retention.purge_interval_seconds < 0:
        raise ConfigurationError("[retention] days and purge_interval_seconds cannot be negative.")
    if http.prepare_rate_limit < 0 or http.prepare_rate_window_seconds < 1:
        raise ConfigurationError(
            "[http] prepare_rate_limit must be 0 (no limit) or more, prepare_rate_window_seconds 1 or more."
        )
    if http.body_timeout_seconds <= 0:
        raise ConfigurationError("[http] body_timeout_seconds must be more than 0.")
    if settings.audit.checkpoint_every < 1 or settings.audit.checkpoint_interval_seconds < 1:
        raise ConfigurationError(
            "[audit] checkpoint_every and checkpoint_interval_seconds must be 1 or more."
        )
    if settings.reviews.expire_after_seconds < 1:
        raise ConfigurationError("[reviews] expire_after_seconds must be 1 or more.")
    if settings.database.pool_size < 1 or settings.database.connect_timeout <= 0:
        raise ConfigurationError("[database] pool_size must be 1 or more and connect_timeout more than 0.")


def policies_from_table(table: Mapping[str, Any], source: str) -> PoliciesSettings:
    """A `[policies]` table (enabled, block, one table of options per policy) read from elsewhere
    than the config file, such as a policy test's case file; checked as the config file's is."""
    raw: dict[str, Any] = {"policies": dict(table)}
    _policy_options_apart(raw, Path(source))
    try:
        policies = msgspec.convert(raw["policies"], PoliciesSettings)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"{source}: [policies] {exc}") from None
    _check_policies(policies)
    return policies


def _policy_options_apart(raw: dict[str, Any], path: Path | None) -> None:
    """`[policies]` holds `enabled` beside one table of options per policy; keep the tables apart."""
    policies = raw.get("policies")
    if policies is None:
        return
    if not isinstance(policies, dict):
        raise ConfigurationError(f"config file {path}: [policies] must be a table.")
    options = {}
    for name in [key for key in policies if key not in {"enabled", "block"}]:
        table = policies.pop(name)
        if not isinstance(table, dict):
            raise ConfigurationError(
                f"config file {path}: `{name}` under [policies] must be a table of options, "
                f"[policies.{name}]; the policies that run are listed in [policies] enabled."
            )
        options[name] = table
    policies["options"] = options


def _check_policies(policies: PoliciesSettings) -> None:
    duplicates = sorted({name for name in policies.enabled if policies.enabled.count(name) > 1})
    if duplicates:
        raise ConfigurationError(f"[policies] enabled names {', '.join(duplicates)} more than once.")
    idle = sorted(set(policies.options) - set(policies.enabled))
    if idle:
        raise ConfigurationError(
            f"[policies.{idle[0]}] sets options for a policy that is not enabled; add {idle[0]!r} to "
            "[policies] enabled to run it, or remove the table. (Options never turn a policy on or off.)"
        )


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    known = env_overrides()
    for name, value in environ.items():
        if not name.startswith("IDGATE_") or name in _NOT_OVERRIDES:
            continue
        if name not in known:
            raise ConfigurationError(
                f"unknown environment variable {name}; known: IDGATE_CONFIG, {', '.join(sorted(known))}."
            )
        section, key = known[name]
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigurationError(f"[{section}] in the config file must be a table.")
        # Lists (such as cors_origins) are written comma-separated; msgspec converts the rest from text.
        is_list = isinstance(getattr(_SECTIONS[section](), key), list | tuple)
        target[key] = [v.strip() for v in value.split(",") if v.strip()] if is_list else value


def _readable(exc: msgspec.ValidationError) -> str:
    # msgspec says "Object contains unknown field `x` - at `$.portone`"; say it in config terms:
    # "unknown key `x` in [portone]".
    text = str(exc).replace("Object contains unknown field", "unknown key")
    return re.sub(r"` - at `\$\.([\w.]+)`", lambda m: f"` in [{m.group(1)}]", text)


def with_overrides(settings: Settings, **sections: Mapping[str, Any]) -> Settings:
    """A copy of `settings` with some keys of some sections replaced (used by `idgate demo`)."""
    data = msgspec.to_builtins(settings)
    for section, values in sections.items():
        data[section] = {**data[section], **values}
    changed = msgspec.convert(data, Settings)
    _check_policies(changed.policies)
    _check_limits(changed)
    return changed


INIT_TEMPLATE = """\
# idgate configuration. Every key is optional; unknown keys are an error.
# Environment variables IDGATE_<SECTION>_<KEY> override these (e.g. IDGATE_DATABASE_URL).

[portone]
# PortOne V1 REST API. Keep the key and secret out of this file in production:
# set IDGATE_PORTONE_IMP_KEY and IDGATE_PORTONE_IMP_SECRET instead.
url = "https://api.iamport.kr"
imp_key = ""
imp_secret = ""
connect_timeout = 3.0   # seconds
read_timeout = 10.0     # seconds
attempts = 3            # tries for a lookup on connection errors and 5xx
max_connections = 100   # kept-alive connections to PortOne; at least your peak concurrency

[database]
# SQLite (one process) or PostgreSQL (several workers), e.g.
# url = "postgresql+asyncpg://idgate@db.internal:5432/idgate"
url = "sqlite+aiosqlite:///.idgate/idgate.db"
sqlite_synchronous = "full"   # "normal": faster commits that a power cut (not a crash) can lose
pool_size = 10                # PostgreSQL: connections per worker for verifications
connect_timeout = 5.0         # seconds; a database that takes longer answers 503 store_unavailable
statement_timeout = 10.0      # seconds any one statement may take

[keyring]
# Encryption and blind-index keys for the stored identities (mode 0600; `idgate keys generate`).
# IDGATE_KEYRING, the base64 of this file's content, takes precedence. Back it up: without it the
# stored identities cannot be read.
path = ".idgate/keyring.json"

[verification]
# Require every verification to carry a merchant_uid issued by POST /certifications/prepare and
# recorded by PortOne for that imp_uid. This stops an imp_uid stolen from, or replayed into, another
# browser session. Turn it off only if your frontend cannot call prepare first.
require_prepare = true
prepare_ttl_seconds = 900
# A certification older than this is refused, even if never used.
max_certification_age_seconds = 1800

[http]
cors_origins = []       # e.g. ["https://www.example.com"]
allow_url = ""          # redirect flow: where to send the browser on allow (empty: answer JSON)
deny_url = ""           # ... and on deny, review or error
body_timeout_seconds = 10.0          # a body slower than this is answered 408
forwarded_allow_ips = ["127.0.0.1"]  # proxies trusted to name the client in X-Forwarded-For
prepare_rate_limit = 60              # prepares per client address and window (all workers); 0: none
prepare_rate_window_seconds = 60

[retention]
# Rows that only serve replay protection; decisions are kept. `idgate db purge` runs it by hand.
prepared_request_days = 1.0          # after a prepared merchant_uid expires
consumed_certification_days = 30.0   # at least [verification] max_certification_age_seconds
purge_interval_seconds = 3600        # 0: only `idgate db purge`

[audit]
# Checkpoints of the decision log are signed with this Ed25519 key (mode 0600). Keep it apart from
# the database and its backups; give auditors the public key (`idgate decisions public-key`).
signing_key_path = ".idgate/log-signing-key.pem"
log_name = "idgate/decisions"        # one word naming this log in every checkpoint
checkpoint_every = 1000              # decisions between checkpoints at most
checkpoint_interval_seconds = 60     # and at least this often while decisions come in

[reviews]
# A `review` verdict with a subject opens a case that keeps the identity (encrypted) until a token of
# role `reviewer` resolves it (`GET /reviews`, `idgate reviews list|resolve`). Unresolved, it expires:
expire_after_seconds = 604800        # 7 days; an expired case denies and its identity is discarded

# Eligibility policies. `enabled` alone decides which run (`idgate policies list` shows what is
# installed); each [policies.<name>] table sets one enabled policy's options, and how idgate runs it:
# `enforce = false` runs it in shadow mode (recorded, never deciding); `timeout_seconds = 2.0`;
# `on_error = "deny"` (a failure or timeout denies) or "abstain". See docs/policies.md.
[policies]
enabled = ["age_limit", "duplicate_identity"]
block = []                 # installed plugins never to load, by name (an incident's quick stop)

[policies.age_limit]
min_age = 19
# max_age = 64             # an upper bound too, if the product has one
method = "international"   # 만 나이; "year" for 연 나이 (Youth Protection Act)

[policies.duplicate_identity]
on_bound = "deny"          # or "review": the person is already bound to another account
without_ci = "di"          # no CI (some Kakao certificates): "di" fallback, "abstain" or "deny"
"""
