"""Thin Celery tasks, one per stage, and the chain builder."""
