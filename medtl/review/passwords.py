"""Password rules of local accounts: a minimum length, a common-password list, a strength estimate.

A password is refused, with a reason the user can act on, when it is

* shorter than the policy's minimum (12 characters by default);
* on the list of common passwords shipped with ``zxcvbn`` (30,000 passwords from leaks,
  compared case-insensitively);
* rated below the policy's minimum score (3 of 0-4) by the ``zxcvbn`` strength estimator
  (Dropbox's algorithm: dictionary words, keyboard patterns, repeats, sequences, dates, the
  user's own name), which catches ``aaaaaaaaaaaa`` and ``password1234``.

Example::

    check_password("correct horse battery staple", username="alice", min_length=12)
"""

from __future__ import annotations

from functools import lru_cache

#: zxcvbn's running time grows with the length; a strong prefix means a strong password.
_ESTIMATE_CHARS = 64
#: Longer passwords are refused (argon2 copes, but a form should not carry megabytes).
MAX_PASSWORD_LENGTH = 1024


class WeakPasswordError(ValueError):
    """The password breaks a rule; the message says which and how to do better."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The common-password list shipped with ``zxcvbn`` (lower case)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


def check_password(
    password: str, *, username: str | None = None, min_length: int = 12, min_score: int = 3
) -> None:
    """Raise :class:`WeakPasswordError` unless ``password`` follows the rules.

    Args:
        password: the candidate password.
        username: the account name (a password built from it is weak).
        min_length: fewest characters accepted.
        min_score: lowest ``zxcvbn`` score accepted (0-4; 3 is "safely unguessable":
            about 10^10 guesses).

    Raises:
        WeakPasswordError: with the reason and a suggestion.
    """
    if not isinstance(password, str) or len(password) < min_length:
        raise WeakPasswordError(f"passwords need at least {min_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"passwords are limited to {MAX_PASSWORD_LENGTH} characters")
    if password.lower() in common_passwords():
        raise WeakPasswordError(
            "this password is on the list of common passwords; choose another, e.g. a "
            "passphrase of several uncommon words"
        )
    from zxcvbn import zxcvbn

    inputs = [username] if username else []
    result = zxcvbn(password[:_ESTIMATE_CHARS], user_inputs=inputs)
    if result["score"] < min_score:
        feedback = result.get("feedback") or {}
        hints = [feedback.get("warning") or "", *(feedback.get("suggestions") or [])]
        reason = " ".join(h.strip() for h in hints if h and h.strip())
        raise WeakPasswordError(
            "this password is too easy to guess"
            + (f": {reason}" if reason else ".")
            + " A passphrase of several uncommon words is both strong and memorable."
        )
