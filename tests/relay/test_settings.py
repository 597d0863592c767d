"""Settings (TOML + ZKCARE_RELAY_* env, one line per problem), keys (keystores, ape aliases)
and the CLI's start-up validation."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from eth_account import Account
from eth_utils import keccak

from prover.exceptions import RelayConfigError
from prover.relay.__main__ import cli
from prover.relay.keys import RelayKeys, load_account, load_keys
from prover.relay.service import resolve_models
from prover.relay.settings import KeyConfig, ModelConfig, load_settings

from .support import encrypt_key

SECRET = "ab" * 32
SETTLEMENT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture
def keys(tmp_path):
    hospital, submitter = Account.create(), Account.create()
    return {
        "hospital": (hospital, encrypt_key(hospital.key, "pw-h", tmp_path / "hospital.json")),
        "submitter": (submitter, encrypt_key(submitter.key, "pw-s", tmp_path / "submitter.json")),
    }


@pytest.fixture
def config(tmp_path, keys):
    path = tmp_path / "relay.toml"
    path.write_text(
        f"""
rpc_urls = ["http://127.0.0.1:8545", "https://backup.example/rpc/KEY123"]
settlement = "{SETTLEMENT.lower()}"
workers = 3
confirmations = 4
[hospital_key]
keystore = "{keys["hospital"][1]}"
[submitter_key]
keystore = "{keys["submitter"][1]}"
"""
    )
    return path


@pytest.fixture
def env(monkeypatch):
    for name, value in {
        "ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE": "pw-h",
        "ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE": "pw-s",
        "ZKCARE_RELAY_NULLIFIER_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_file_plus_environment(config, env, keys):
    env.setenv("ZKCARE_RELAY_CONFIRMATIONS", "6")  # the environment overrides the file
    settings = load_settings(config)
    assert settings.settlement == SETTLEMENT  # checksummed
    assert settings.workers == 3 and settings.confirmations == 6
    assert settings.hospital_key.keystore == keys["hospital"][1]
    assert settings.hospital_key.passphrase.get_secret_value() == "pw-h"
    assert settings.nullifier_key == bytes.fromhex(SECRET)
    assert [m.key for m in settings.models] == ["breast_cancer_lr@1"]
    assert "pw-h" not in repr(settings) and SECRET not in repr(settings)
    loaded = load_keys(settings)
    assert loaded.hospital.address == keys["hospital"][0].address
    assert loaded.submitter.address == keys["submitter"][0].address
    assert keys["submitter"][0].key.hex() not in repr(loaded)
    env.setenv("ZKCARE_RELAY_CONFIG", str(config))
    assert load_settings().workers == 3  # the file may come from the environment too


def test_every_problem_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    path = tmp_path / "bad.toml"
    path.write_text(
        """
rpc_urls = ["ftp://node"]
settlement = "0x1234"
port = "eighty"
fee_bump_percent = 5
[hospital_key]
keystore = "/k.json"
ape_alias = "also"
"""
    )
    monkeypatch.setenv("ZKCARE_RELAY_NULLIFIER_SECRET", "abcd")
    with pytest.raises(RelayConfigError) as info:
        load_settings(path)
    problems = info.value.problems
    expected = [
        "rpc_urls[0] (env ZKCARE_RELAY_RPC_URLS): URL scheme should be 'http' or 'https'",
        "settlement (env ZKCARE_RELAY_SETTLEMENT): Value error, not an Ethereum address",
        "hospital_key (env ZKCARE_RELAY_HOSPITAL_KEY): Value error, set exactly one of keystore",
        "submitter_key (env ZKCARE_RELAY_SUBMITTER_KEY): required",
        "nullifier_secret (env ZKCARE_RELAY_NULLIFIER_SECRET): Value error, must be at least 32",
        "port (env ZKCARE_RELAY_PORT): Input should be a valid integer",
        "fee_bump_percent (env ZKCARE_RELAY_FEE_BUMP_PERCENT): Input should be greater than or "
        "equal to 10",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)
    assert all("\n" not in p for p in problems)
    assert "abcd" not in str(info.value)


def test_secrets_in_the_file_are_refused(config, env):
    config.write_text(
        config.read_text().replace(
            "[hospital_key]", 'nullifier_secret = "00"\n[hospital_key]\npassphrase = "pw"'
        )
    )
    with pytest.raises(RelayConfigError) as info:
        load_settings(config)
    assert info.value.problems == [
        "nullifier_secret: secrets are read from the environment only "
        f"(ZKCARE_RELAY_NULLIFIER_SECRET), remove it from {config}",
        "hospital_key.passphrase: secrets are read from the environment only "
        f"(ZKCARE_RELAY_HOSPITAL_KEY__PASSPHRASE), remove it from {config}",
    ]


def test_missing_or_broken_config_file(tmp_path):
    with pytest.raises(RelayConfigError, match="config file .*nope.toml does not exist"):
        load_settings(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("rpc_urls = [")
    with pytest.raises(RelayConfigError, match="broken.toml: "):
        load_settings(broken)


def test_model_settings():
    # the id the contracts' tests and the registry use for the diagnostic model
    assert ModelConfig().model_id_bytes == keccak(text="zkcare/breast_cancer_lr")
    assert ModelConfig(model_id="0x" + "11" * 32).model_id_bytes == b"\x11" * 32
    with pytest.raises(ValueError, match="bundle is required for models other than"):
        ModelConfig(name="other")
    with pytest.raises(ValueError, match="64 hex digits"):
        ModelConfig(model_id="0x12")
    with pytest.raises(ValueError, match="1-64 characters"):
        ModelConfig(name="bad name")


def test_preprocessing_must_match_the_bundle(diagnostic_bundle, tmp_path):
    other = tmp_path / "pre.json"
    other.write_text(json.dumps({"version": "x", "feature_names": [], "mean": [], "scale": []}))
    with pytest.raises(RelayConfigError, match=r"models\[0\].preprocess: .* is not the prepro"):
        resolve_models([ModelConfig(bundle=diagnostic_bundle.path, preprocess=other)])
    with pytest.raises(RelayConfigError, match=r"models\[0\].bundle: circuit bundle"):
        resolve_models([ModelConfig(bundle=tmp_path)])


def test_key_errors_name_the_file_and_variable_never_the_secret(tmp_path, keys):
    path = keys["submitter"][1]
    with pytest.raises(Exception, match="no passphrase for .*: set ZKCARE_RELAY_SUBMITTER_KEY"):
        load_account("submitter", KeyConfig(keystore=path))
    with pytest.raises(Exception) as info:
        load_account("submitter", KeyConfig(keystore=path, passphrase="not-it-42"))
    assert "wrong passphrase in ZKCARE_RELAY_SUBMITTER_KEY__PASSPHRASE" in str(info.value)
    assert "not-it-42" not in str(info.value)
    with pytest.raises(Exception, match="keystore: .*missing.json does not exist"):
        load_account("hospital", KeyConfig(keystore=tmp_path / "missing.json", passphrase="x"))


def test_ape_account_alias(tmp_path, monkeypatch):
    account = Account.create()
    (tmp_path / "ape" / "accounts").mkdir(parents=True)
    encrypt_key(account.key, "ape-pw", tmp_path / "ape" / "accounts" / "relayer.json")
    monkeypatch.setenv("APE_DATA_FOLDER", str(tmp_path / "ape"))
    monkeypatch.setenv("APE_ACCOUNTS_relayer_PASSPHRASE", "ape-pw")  # ape's own variable
    loaded = load_account("submitter", KeyConfig(ape_alias="relayer"))
    assert loaded.address == account.address
    with pytest.raises(Exception, match="ape account 'ghost': .*ghost.json does not exist"):
        load_account("submitter", KeyConfig(ape_alias="ghost", passphrase="x"))
    keys = RelayKeys(loaded, loaded)
    assert account.key.hex() not in repr(keys) and account.address in repr(keys)


def test_cli_reports_invalid_settings_one_line_each(tmp_path, monkeypatch):
    for name in ("ZKCARE_RELAY_NULLIFIER_SECRET", "ZKCARE_RELAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "relay.toml"
    path.write_text('rpc_urls = []\nsettlement = "nope"\n')
    for command in ("serve", "check"):
        result = CliRunner().invoke(cli, [command, "--config", str(path)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert lines[0] == "zkcare relay: invalid settings"
        assert (
            "  rpc_urls (env ZKCARE_RELAY_RPC_URLS): List should have at least 1 item" in lines[1]
        )
        assert len(lines) == 6  # rpc_urls, settlement, two keys, nullifier secret
        assert "Traceback" not in result.output


def test_cli_check_prints_the_addresses(config, env, keys, diagnostic_bundle):
    config.write_text(
        config.read_text()
        + f'[[models]]\nname = "breast_cancer_lr"\nbundle = "{diagnostic_bundle.path}"\n'
    )
    no_key = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert no_key.exit_code == 2 and "  no data key: set ZKCARE_RELAY_DATA_KEY" in no_key.output
    env.setenv("ZKCARE_RELAY_DATA_KEY", "5e" * 32)
    result = CliRunner().invoke(cli, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"hospital    {keys['hospital'][0].address}" in result.output
    assert f"submitter   {keys['submitter'][0].address}" in result.output
    assert "pw-h" not in result.output and SECRET not in result.output


def test_store_dsn_from_file_without_password_or_environment_with_one(config, env):
    assert load_settings(config).store_dsn is None  # unset: SQLite in data_dir
    plain = "postgresql://relay@db.example:5432/zkcare"
    config.write_text(
        config.read_text().replace("workers = 3", f'workers = 3\nstore_dsn = "{plain}"')
    )
    settings = load_settings(config)
    assert settings.store_dsn_value == plain and plain not in repr(settings)
    secret = "postgresql://relay:pg-pass-42@db.example:5432/zkcare"
    env.setenv("ZKCARE_RELAY_STORE_DSN", secret)
    settings = load_settings(config)
    assert settings.store_dsn_value == secret and "pg-pass-42" not in repr(settings)
    env.delenv("ZKCARE_RELAY_STORE_DSN")
    config.write_text(config.read_text().replace(plain, secret))
    with pytest.raises(RelayConfigError) as refused:
        load_settings(config)
    assert (
        "store_dsn: secrets are read from the environment only (ZKCARE_RELAY_STORE_DSN), "
        f"remove it from {config} (or drop the password and use a PGPASSFILE)"
    ) in str(refused.value)
    assert "pg-pass-42" not in str(refused.value)


def test_a_malformed_store_dsn_is_one_line(config, env):
    env.setenv("ZKCARE_RELAY_STORE_DSN", "relay-data/jobs.sqlite3")
    with pytest.raises(RelayConfigError) as refused:
        load_settings(config)
    assert refused.value.problems == [
        "store_dsn (env ZKCARE_RELAY_STORE_DSN): Value error, must be a postgresql:// URI or "
        "libpq key=value pairs (for example postgresql://relay@db.example:5432/zkcare)"
    ]
