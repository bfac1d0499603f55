"""Alembic migrations of the platform database (run them with ``pam db upgrade``)."""
