"""Who may change things: open without login, editors only with it, nobody when in doubt."""

from __future__ import annotations

import pytest

from mmcore.access import OPEN_NOTE, Access, parse_editors, verified_email
from mmcore.config import Settings
from mmcore.errors import MMError


def test_without_login_or_editors_everyone_may_write_and_is_told_so():
    access = Access.of(login=False)
    assert access.open
    assert access.can_write(None) and access.can_write("anyone@example.com")
    assert access.why_not(None) is None
    assert access.describe(None) == OPEN_NOTE
    assert "anyone who can reach this server can upload and delete" in OPEN_NOTE and "README" in OPEN_NOTE


def test_editors_without_login_fail_closed():
    access = Access.of(login=False, editors=("alice@example.com",))
    assert not access.open
    assert not access.can_write(None) and not access.can_write("alice@example.com")
    assert "login is not configured" in access.why_not(None)


def test_with_login_only_listed_editors_may_write_case_insensitively():
    access = Access.of(login=True, editors=parse_editors("Alice@Example.com, bob@example.org"))
    assert access.can_write("alice@example.com") and access.can_write("ALICE@example.COM")
    assert access.can_write("bob@example.org")
    assert not access.can_write("mallory@example.com")
    assert not access.can_write(None)
    assert "you are not among the editors (MMCORE_EDITORS)" in access.why_not("mallory@example.com")
    assert "verified email" in access.why_not(None)
    assert access.describe("alice@example.com").startswith("Signed in as alice@example.com: you may")
    assert access.describe("mallory@example.com").startswith("Signed in as mallory@example.com. Read-only")


def test_with_login_and_no_editors_nobody_may_write_until_some_are_listed():
    access = Access.of(login=True)
    assert not access.can_write("alice@example.com") and not access.can_write(None)
    assert "no editors are listed" in access.why_not("alice@example.com")
    assert "MMCORE_EDITORS" in access.describe("alice@example.com")


def test_star_lets_every_logged_in_user_with_an_email_write():
    access = Access.of(login=True, editors=parse_editors("*"))
    assert access.can_write("anyone@example.com")
    assert not access.can_write(None)


@pytest.mark.parametrize("raw,expected", [
    ("", ()),
    (" , ", ()),
    ("A@x.org", ("a@x.org",)),
    (" a@x.org ,b@y.org,a@X.org ", ("a@x.org", "b@y.org")),
    ("*", ("*",)),
])
def test_parse_editors(raw, expected):
    assert parse_editors(raw) == expected


@pytest.mark.parametrize("raw", ["alice", "a@b@c", "@example.com", "alice@", "a@x.org; b@y.org"])
def test_parse_editors_refuses_what_is_not_an_email(raw):
    with pytest.raises(MMError, match="MMCORE_EDITORS"):
        parse_editors(raw)


def test_settings_read_editors_from_the_environment():
    assert Settings.from_env({}).editors == ()
    assert Settings.from_env({"MMCORE_EDITORS": "Alice@Example.com,bob@example.org"}).editors == (
        "alice@example.com", "bob@example.org")
    with pytest.raises(MMError, match="MMCORE_EDITORS"):
        Settings.from_env({"MMCORE_EDITORS": "alice"})


@pytest.mark.parametrize("claims,expected", [
    ({"email": "Alice@Example.com", "email_verified": True}, "alice@example.com"),
    ({"email": "alice@example.com"}, "alice@example.com"),  # providers that don't send the claim
    ({"email": "alice@example.com", "email_verified": False}, None),
    ({"email": "alice@example.com", "email_verified": "false"}, None),
    ({"email": "alice@example.com", "email_verified": "true"}, "alice@example.com"),
    ({"name": "Alice"}, None),
    ({"email": "  "}, None),
    ({"email": None}, None),
])
def test_verified_email(claims, expected):
    assert verified_email(claims) == expected
