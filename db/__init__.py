"""The job table: SQLAlchemy models, sessions and a few plain query functions."""
