"""Where a sweep's study lives (optuna's RDB storage: SQLite alone, PostgreSQL for many workers): opened once
workers race to create it, and its URL never shown with its password.
"""

from __future__ import annotations

import re
import time
import urllib.parse
import warnings
from typing import Any

from ..errors import UserError

_PASSWORD_PARAMETER = re.compile(r"([?&](?:password|passwd|pwd)=)([^&#]*)", re.IGNORECASE)


def without_password(text: str, url: str) -> str:
    """`text` (an error message, a warning, the URL itself) with the password of the storage URL `url` shown as ***,
    wherever it occurs: in the URL's USER:PASSWORD@ part, in a ?password= parameter, and in a driver's message.

    The URL is read by hand, not by a URL parser: a URL that cannot be parsed (a port that is not a number) must
    be masked too. The password ends at the URL's last '@' (one typed unencoded with an '@' in it is hidden whole,
    though the driver took its tail for the host)."""
    scheme, sep, rest = url.partition("://")
    user, colon, after_user = rest.partition(":")
    shown, secrets = url, []
    if sep and colon and "@" in after_user and not {"/", "@"} & set(user):
        password, host = after_user.rsplit("@", 1)
        shown = f"{scheme}://{user}:***@{host}"
        # a driver may quote it decoded, or the part after an '@' in it, which it took for the host
        secrets = [password, urllib.parse.unquote(password)]
        secrets += [password[i + 1 :] + "@" for i, char in enumerate(password) if char == "@"]
    secrets += [m.group(2) for m in _PASSWORD_PARAMETER.finditer(url)]
    text = text.replace(url, _PASSWORD_PARAMETER.sub(r"\1***", shown))
    # elsewhere in the text, a secret of under 4 characters would also hide ordinary words (one followed by the
    # '@' it was split at is specific enough)
    for secret in sorted({s for s in secrets if len(s) >= 4 or len(s) > 1 and s.endswith("@")}, key=len, reverse=True):
        text = text.replace(secret, "***@" if secret.endswith("@") else "***")
    return text


def open_study(storage: str, name: str, prune: bool, startup_trials: int, sampler_seed: int | None) -> Any:
    """The study `name` in `storage`, made if absent; a warning said while opening it is said again without the
    URL's password (an error says none either)."""
    said: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as said:
            return _open_study(storage, name, prune, startup_trials, sampler_seed)
    finally:
        for warning in said:
            warnings.warn(without_password(str(warning.message), storage), warning.category, stacklevel=2)


def _open_study(storage: str, name: str, prune: bool, startup_trials: int, sampler_seed: int | None) -> Any:
    import optuna

    pruner = optuna.pruners.MedianPruner(n_startup_trials=startup_trials) if prune else optuna.pruners.NopPruner()
    for attempt in range(4):
        # workers starting together race to create the tables and the study: the loser sees a duplicate, then
        # finds them made
        race = attempt < 3
        try:
            rdb = optuna.storages.RDBStorage(storage)
        except Exception as e:  # noqa: BLE001 (a wrong URL, a server down, a missing driver: one message)
            if race and type(e).__name__ in ("IntegrityError", "ProgrammingError"):  # a table or type made twice
                time.sleep(0.5 * (attempt + 1))
                continue
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(
                without_password(
                    f"--storage {storage}: cannot open the study database ({type(e).__name__}: {reason}); check that "
                    "the server runs and is reachable at that host and port, the user, password and database name, "
                    "and that its driver is installed (cifarkit[sweep])",
                    storage,
                )
            ) from None
        try:
            return optuna.create_study(
                storage=rdb,
                study_name=name,
                direction="maximize",
                load_if_exists=True,
                pruner=pruner,
                sampler=optuna.samplers.TPESampler(seed=sampler_seed),
            )
        except optuna.exceptions.DuplicatedStudyError:
            if not race:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")
