"""Alembic's migrations of idgate's schema, run by `idgate db upgrade` (see adapters/store/schema.py)."""
