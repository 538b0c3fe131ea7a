"""Alembic environment: the database URL comes from the same settings the workers read."""

from alembic import context
from sqlalchemy import create_engine

from db.models import Base
from hitline.config import get_settings

url = context.config.attributes.get("url") or get_settings().db_url()


def run() -> None:
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=Base.metadata)
        with context.begin_transaction():
            context.run_migrations()


run()
