"""Who may change things: the rules behind the app's optional login, free of Streamlit.

Without login (no [auth] in .streamlit/secrets.toml) the app is open: anyone who reaches it may read and
write. With login, every page needs a logged-in user, and only the editors named in MMCORE_EDITORS may
upload, delete, tag, import or edit a taxonomy; until some are named, nobody may (fail closed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import MMError

EVERYONE = "*"  # in MMCORE_EDITORS: every logged-in user with an email may write
OPEN_NOTE = "Open access: anyone who can reach this server can upload and delete; see README to turn on login."


def parse_editors(raw: str) -> tuple[str, ...]:
    """MMCORE_EDITORS: comma-separated emails (case-insensitive) or `*`; raises MMError on anything else."""
    editors = tuple(dict.fromkeys(e.strip().lower() for e in raw.split(",") if e.strip()))
    for entry in editors:
        if entry != EVERYONE and (entry.count("@") != 1 or entry.startswith("@") or entry.endswith("@")):
            raise MMError(f"MMCORE_EDITORS: {entry!r} is not an email address (list emails separated by commas, or *)")
    return editors


def verified_email(claims: Mapping[str, object]) -> str | None:
    """The logged-in user's email from their OIDC claims, unless the provider says it is unverified."""
    email = claims.get("email")
    if not isinstance(email, str) or not email.strip():
        return None
    # some providers send the claim as a string
    if claims.get("email_verified") in (False, "false", "False"):
        return None
    return email.strip().lower()


@dataclass(frozen=True)
class Access:
    """`login`: login is configured. `editors`: who may write once logged in (lower-case emails, or `*`)."""

    login: bool
    editors: frozenset[str] = frozenset()

    @classmethod
    def of(cls, login: bool, editors: tuple[str, ...] | frozenset[str] = ()) -> "Access":
        return cls(login, frozenset(e.strip().lower() for e in editors))

    @property
    def open(self) -> bool:
        return not self.login and not self.editors

    def can_write(self, email: str | None) -> bool:
        """`email`: the logged-in user's verified email, None when nobody is logged in or it is unknown."""
        if self.open:
            return True
        if not self.login or email is None:
            return False
        return EVERYONE in self.editors or email.strip().lower() in self.editors

    def why_not(self, email: str | None) -> str | None:
        """Why this user may not change anything (for a tooltip or an error), or None when they may."""
        if self.can_write(email):
            return None
        if not self.login:
            return ("Read-only: MMCORE_EDITORS is set but login is not configured ([auth] in .streamlit/secrets.toml), "
                    "so nobody can be recognised as an editor.")
        if email is None:
            return "Read-only: making changes needs a login with a verified email."
        if not self.editors:
            return "Read-only: no editors are listed yet; an administrator sets MMCORE_EDITORS to the emails who may make changes."
        return "Read-only: you are not among the editors (MMCORE_EDITORS) who may make changes."

    def describe(self, email: str | None) -> str:
        """One line for the sidebar: how access works here and what this user may do."""
        if self.open:
            return OPEN_NOTE
        reason = self.why_not(email)
        if not self.login or email is None:
            return reason or ""
        return f"Signed in as {email}. {reason}" if reason else f"Signed in as {email}: you may upload, tag and delete."
