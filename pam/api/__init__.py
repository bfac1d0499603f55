"""The lobby service: ``GET /v1/players/{player_id}/lobby`` and its dependencies, deadlines and fallbacks.

The request's way: :mod:`.auth` (the token) -> :mod:`.lobby` (all dependency calls at once, each through
:mod:`.deadline` with its breaker) -> the catalog (:mod:`.catalog`) -> sections assembled -> JSON. The app
is built by :func:`pam.api.app.create_app`.
"""
