"""Relay settings: a TOML config file plus ``ZKCARE_RELAY_*`` environment variables.

Environment variables override the file; nested fields use ``__`` (for example
``ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE``). Secrets (key passphrases, the nullifier secret, the
data key) are accepted from the environment only: a config file that contains one is rejected.
:func:`load_settings` reports every problem at once, one line each, naming both the file key and
the environment variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from eth_utils import is_address, keccak, to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from prover.exceptions import InsecureBind, InvalidInput, RelayConfigError
from prover.relay.engine import EngineSettings  # engine hook (issue 11)

ENV_PREFIX = "ZKCARE_RELAY_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
DIAGNOSTIC_MODEL_NAME = "breast_cancer_lr"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SECRET_FIELDS = ("nullifier_secret", "data_key")


class KeyConfig(BaseModel):
    """A signing key: an eth-account keystore file, or an ape account alias."""

    model_config = ConfigDict(extra="forbid")

    keystore: Path | None = None
    ape_alias: str | None = None
    passphrase: SecretStr | None = Field(default=None, description="environment only")

    @model_validator(mode="after")
    def _one_source(self) -> KeyConfig:
        if (self.keystore is None) == (self.ape_alias is None):
            raise ValueError("set exactly one of keystore or ape_alias")
        return self


class ModelConfig(BaseModel):
    """A model version the relay proves: a name and version registered on chain, and the
    bundle it is proved with (its model card and its own ``preprocess.json`` included)."""

    model_config = ConfigDict(extra="forbid")

    name: str = DIAGNOSTIC_MODEL_NAME
    version: int = Field(default=1, ge=1, lt=2**32)
    model_id: str | None = Field(
        default=None, description="bytes32 registry id; default keccak256('zkcare/<name>')"
    )
    bundle: Path | None = Field(
        default=None,
        description=f"bundle directory (`model build`); required except for {DIAGNOSTIC_MODEL_NAME}"
        ", whose default is the built-in bundle",
    )
    preprocess: Path | None = Field(
        default=None,
        description="optional check only: must be the bundle's own preprocess.json (a model is "
        "always proved with its bundle's own preprocessing)",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use 1-64 characters from A-Z a-z 0-9 _ . -")
        return value

    @field_validator("model_id")
    @classmethod
    def _model_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
            raise ValueError("must be 0x followed by 64 hex digits (bytes32)")
        return value

    @model_validator(mode="after")
    def _bundle_needed(self) -> ModelConfig:
        if self.bundle is None and self.name != DIAGNOSTIC_MODEL_NAME:
            raise ValueError(f"bundle is required for models other than {DIAGNOSTIC_MODEL_NAME}")
        return self

    @property
    def key(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def model_id_bytes(self) -> bytes:
        """The registry's bytes32 model id."""
        if self.model_id is not None:
            return bytes.fromhex(self.model_id[2:])
        return bytes(keccak(text=f"zkcare/{self.name}"))


class EvaluationConfig(BaseModel):
    """Research-bounty evaluations on a private benchmark (``POST /v1/evaluations``).

    The benchmark rows stay here: the relay builds (or reuses) the evaluation circuit with them
    baked in, proves researchers' weights against it and submits for them to ``bounty_contract``
    with the submitter key.
    """

    model_config = ConfigDict(extra="forbid")

    benchmark: Path = Field(
        description='private benchmark JSON: {"features": [[30 standardized values], ...], '
        '"labels": [0|1, ...]}; never logged or returned'
    )
    bounty_contract: str = Field(description="ResearchBounty address")
    max_active: int = Field(
        default=8, ge=1, le=1024, description="unfinished evaluations before 429"
    )
    timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="how long one attempt waits for a receipt or the reveal block",
    )
    max_attempts: int = Field(default=3, ge=1, le=100, description="tries per evaluation")

    @field_validator("bounty_contract")
    @classmethod
    def _address(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError("not an Ethereum address")
        return str(to_checksum_address(value))


class RelaySettings(BaseSettings):
    """Everything the relay needs; the README section "Prover relay" has an example file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    # chain
    rpc_urls: list[HttpUrl] = Field(min_length=1, description="JSON-RPC endpoints, in order")
    chain_id: int | None = Field(default=None, ge=1, description="refuse other chains")
    settlement: str = Field(description="ClaimSettlement address")
    confirmations: int = Field(default=2, ge=1, le=1000)
    rpc_timeout_s: float = Field(default=10.0, gt=0)
    poll_interval_s: float = Field(default=0.2, gt=0, le=60)
    # keys and secrets
    hospital_key: KeyConfig
    submitter_key: KeyConfig
    nullifier_secret: SecretStr = Field(description="hex, >= 32 bytes; environment only")
    data_key: SecretStr | None = Field(
        default=None, description="hex, 32 bytes; environment only (or data_key_file)"
    )
    data_key_file: Path | None = Field(
        default=None,
        description="file holding the 32-byte hex data key, mode 0600, outside data_dir "
        "(`keys new-data-key PATH`); used when data_key is not set",
    )
    # storage and service
    data_dir: Path = Path("relay-data")
    store_dsn: SecretStr | None = Field(
        default=None,
        description="PostgreSQL job store shared by every relay instance given it: "
        "postgresql://user@host:5432/db or libpq key=value pairs (a secret: never logged; "
        "one holding a password is accepted from the environment only); unset: SQLite in "
        "data_dir",
    )
    store_pool_size: int = Field(
        default=10, ge=1, le=1000, description="PostgreSQL connections this instance opens at most"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, lt=65536)
    max_body_bytes: int = Field(default=16_384, ge=1024)
    tls_cert_file: Path | None = Field(default=None, description="serve HTTPS with this PEM chain")
    tls_key_file: Path | None = Field(default=None, description="the certificate's PEM key")
    tls_client_ca_file: Path | None = Field(
        default=None, description="mTLS: require client certificates issued by this CA (PEM)"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="reverse proxies (IPs or CIDR networks) whose X-Forwarded-For is believed; "
        "set: the relay runs behind a TLS-terminating proxy",
    )
    job_retention_s: float = Field(
        default=30 * 86_400.0, gt=0, description="finished jobs are deleted after this"
    )
    prune_interval_s: float = Field(default=3600.0, gt=0, description="how often to prune")
    intake_timeout_s: float = Field(
        default=0.5,
        gt=0,
        le=1.0,
        description="per chain read in the request path (policy check); longer -> job held",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # proving
    models: list[ModelConfig] = Field(default_factory=lambda: [ModelConfig()], min_length=1)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1, le=256)
    prove_threads: int = Field(default=1, ge=1, le=256)
    max_queue: int = Field(default=256, ge=1)
    max_prove_attempts: int = Field(default=3, ge=1)
    # research bounties on a private benchmark (optional)
    evaluation: EvaluationConfig | None = None
    # remote provers through Procrastinate instead of the local pool (engine hook, issue 11)
    engine: EngineSettings | None = None
    # several relays on one PostgreSQL store: the active submitter's lease (issue 11)
    submitter_lease_ttl_s: float = Field(
        default=3.0,
        ge=0.5,
        le=300.0,
        description="PostgreSQL store: a silent active submitter is replaced after this",
    )
    submitter_lease_renew_s: float = Field(
        default=1.0,
        gt=0,
        le=150.0,
        description="how often the lease is acquired or renewed (at most half the TTL)",
    )
    # transactions
    priority_fee_gwei: float = Field(default=1.0, ge=0)
    max_fee_gwei: float = Field(default=500.0, gt=0, description="cap on maxFeePerGas")
    gas_limit_multiplier: float = Field(default=1.25, ge=1.0, le=10.0)
    stuck_timeout_s: float = Field(default=30.0, gt=0)
    fee_bump_percent: int = Field(default=12, ge=10, le=500)
    max_replacements: int = Field(default=5, ge=0)
    attestation_ttl_s: int = Field(default=86_400, ge=60)
    batch_max_size: int = Field(
        default=1,
        ge=1,
        le=20,
        description="claims per submitClaimsBatched transaction, for model versions with a "
        "batch verifier registered (1: one submitClaim per claim)",
    )
    batch_max_wait_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="how long the oldest proved claim waits for companions before a smaller "
        "batch (or a single claim) is sent",
    )
    policy_cache_s: float = Field(default=30.0, ge=0)

    @field_validator("settlement")
    @classmethod
    def _address(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError("not an Ethereum address")
        return str(to_checksum_address(value))

    @field_validator("nullifier_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        raw = _hex(value.get_secret_value())
        if raw is None or len(raw) < 32:
            raise ValueError("must be at least 32 bytes, hex-encoded")
        return value

    @field_validator("data_key")
    @classmethod
    def _data_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = _hex(value.get_secret_value())
            if raw is None or len(raw) != 32:
                raise ValueError("must be exactly 32 bytes, hex-encoded")
        return value

    @field_validator("store_dsn")
    @classmethod
    def _store_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from prover.relay.store_pg import check_dsn

            try:
                check_dsn(value.get_secret_value())
            except InvalidInput as exc:
                raise ValueError(str(exc).removeprefix("store_dsn ")) from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR network") from None
        return value

    @model_validator(mode="after")
    def _data_key_source(self) -> RelaySettings:
        if self.data_key is None and self.data_key_file is not None:
            key = Path(os.path.abspath(self.data_key_file))
            data = Path(os.path.abspath(self.data_dir))
            if key.is_relative_to(data):
                raise ValueError(
                    f"data_key_file: {self.data_key_file} lies in data_dir {self.data_dir}; keep "
                    "the key apart from the job store (one backup must not hold both)"
                )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> RelaySettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls: set both tls_cert_file and tls_key_file, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file needs tls_cert_file and tls_key_file")
        return self

    @model_validator(mode="after")
    def _lease_timing(self) -> RelaySettings:
        if self.submitter_lease_renew_s * 2 > self.submitter_lease_ttl_s:
            raise ValueError(
                f"submitter_lease_renew_s ({self.submitter_lease_renew_s:g}) must be at most half "
                f"of submitter_lease_ttl_s ({self.submitter_lease_ttl_s:g})"
            )
        return self

    @model_validator(mode="after")
    def _unique_models(self) -> RelaySettings:
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError(f"models: duplicate name@version in {keys}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: explicit arguments, then the environment, then the TOML file."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @property
    def nullifier_key(self) -> bytes:
        """The HMAC key for record nullifiers and request fingerprints."""
        raw = _hex(self.nullifier_secret.get_secret_value())
        assert raw is not None  # checked by the validator
        return raw

    @property
    def rpc_url_strings(self) -> list[str]:
        """The RPC URLs as plain strings."""
        return [str(u) for u in self.rpc_urls]

    @property
    def db_path(self) -> Path:
        """The SQLite job store (used unless :attr:`store_dsn` is set)."""
        return self.data_dir / "jobs.sqlite3"

    @property
    def store_dsn_value(self) -> str | None:
        """The PostgreSQL DSN in clear (for the store only; never log it), or None."""
        return None if self.store_dsn is None else self.store_dsn.get_secret_value()

    @property
    def tls(self) -> bool:
        """Whether the relay serves HTTPS itself."""
        return self.tls_cert_file is not None

    @property
    def proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """:attr:`trusted_proxies` parsed."""
        return [ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies]


INSECURE_BIND_FLAG = "--insecure-bind-i-know"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(settings: RelaySettings, *, insecure: bool = False) -> None:
    """Refuse a non-loopback listen address without TLS or a trusted proxy in front
    (:class:`InsecureBind`), unless ``insecure`` (``--insecure-bind-i-know``)."""
    if is_loopback(settings.host) or settings.tls or settings.trusted_proxies or insecure:
        return
    raise InsecureBind(settings.host, INSECURE_BIND_FLAG)


def _hex(value: str) -> bytes | None:
    try:
        return bytes.fromhex(value.strip().removeprefix("0x"))
    except ValueError:
        return None


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable for a settings field location."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    return ENV_PREFIX + "__".join(parts).upper()


def dotted(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as ``a.b[0].c``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _secrets_in_file(data: dict[str, Any]) -> list[str]:
    found = [name for name in _SECRET_FIELDS if name in data]
    if isinstance(data.get("store_dsn"), str) and _dsn_has_password(data["store_dsn"]):
        found.append("store_dsn")
    for role in ("hospital_key", "submitter_key"):
        section = data.get(role)
        if isinstance(section, dict) and "passphrase" in section:
            found.append(f"{role}.passphrase")
    return found


def _dsn_has_password(dsn: str) -> bool:
    """Whether a DSN carries a password (then it belongs in the environment, or a PGPASSFILE)."""
    from prover.relay.store_pg import check_dsn

    try:
        return bool(check_dsn(dsn).get("password"))
    except InvalidInput:
        return False  # reported by the field's own validator


def load_settings(config_file: Path | None = None, **overrides: Any) -> RelaySettings:
    """Read and validate the settings; :class:`RelayConfigError` lists every problem."""
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    problems: list[str] = []
    cls: type[RelaySettings] = RelaySettings
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise RelayConfigError([f"config file {path} does not exist"]) from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise RelayConfigError([f"config file {path}: {exc}"]) from None
        for name in _secrets_in_file(data):
            problems.append(
                f"{name}: secrets are read from the environment only "
                f"({env_name(tuple(name.split('.')))}), remove it from {path}"
                + (" (or drop the password and use a PGPASSFILE)" if name == "store_dsn" else "")
            )

        class FileSettings(RelaySettings):
            model_config = SettingsConfigDict(toml_file=path)

        cls = FileSettings
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            loc = tuple(err["loc"])
            where = dotted(loc) or "settings"
            hint = f" (env {env_name(loc)})" if loc else ""
            msg = "required" if err["type"] == "missing" else err["msg"]
            problems.append(f"{where}{hint}: {msg}")
        raise RelayConfigError(problems) from None
    if problems:
        raise RelayConfigError(problems)
    return settings
