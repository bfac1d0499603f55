"""Deadlines and circuit breakers: a dependency call that is slow, failing or switched off by its
breaker yields an :class:`~pam.api.deadline.guard.Outcome` instead of an exception."""
