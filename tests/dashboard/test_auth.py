"""The dashboard's token file and bind rule, without a chain (who may use it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prover.dashboard.auth import (
    Sessions,
    TokenFile,
    add_token,
    bearer,
    check_bind,
    hash_token,
    is_loopback,
)
from prover.exceptions import DashboardAuthRequired, TokenFileError


def test_tokens_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    first = add_token(path, "insurer")
    second = add_token(path, "auditor")
    text = path.read_text()
    assert first not in text and second not in text and hash_token(first) in text
    assert path.stat().st_mode & 0o077 == 0  # 0600
    tokens = TokenFile.load(path)
    assert tokens.who(first) == "insurer" and tokens.who(second) == "auditor"
    assert tokens.who(first + "x") is None and tokens.who("") is None and tokens.who(None) is None
    with pytest.raises(TokenFileError, match="must be one word"):
        add_token(path, "two words")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no token hashes"),
        ("# only a comment\n", "no token hashes"),
        ("md5:abcd x\n", ":1: expected `sha256:<64 hex digits> [name]`"),
        (f"{hash_token('a')}\nsha256:{'z' * 64}\n", ":2: expected"),
    ],
)
def test_a_bad_token_file_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(TokenFileError, match=re.escape(message)):
        TokenFile.load(path)
    with pytest.raises(TokenFileError, match="cannot read"):
        TokenFile.load(tmp_path / "missing")


def test_beyond_loopback_needs_tokens(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "192.168.1.5", "::", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(
            DashboardAuthRequired, match=f"refusing to bind the dashboard to {host}"
        ):
            check_bind(host, None)
    path = tmp_path / "tokens"
    add_token(path, "ops")
    check_bind("0.0.0.0", TokenFile.load(path))


def test_bearer_header_and_sessions() -> None:
    assert bearer("Bearer abc") == "abc" and bearer("bearer abc") == "abc"
    assert bearer("Basic abc") is None and bearer(None) is None and bearer("Bearer ") is None
    sessions = Sessions(ttl_s=60)
    sid = sessions.open("ops")
    assert sessions.who(sid) == "ops" and sessions.who(sid + "x") is None
    sessions.close(sid)
    assert sessions.who(sid) is None
    expired = Sessions(ttl_s=-1)
    assert expired.who(expired.open("ops")) is None
