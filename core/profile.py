"""The FAPI 2.0 Security Profile switch: `[oauth] profile = "fapi2"` for the whole server, or a
client registered with `profile` "fapi2" under a server that is not (stricter, never looser)."""

from __future__ import annotations

from storage.clients import RegisteredClient

FAPI2 = "fapi2"


def fapi2(settings, client: RegisteredClient | None = None) -> bool:
    """Whether FAPI 2.0 rules apply: to every client, or to this one."""
    return settings.profile == FAPI2 or (client is not None and client.profile == FAPI2)
