"""Funds tables (the domain tables arrive with the funds issue)."""

import sqlalchemy as sa

from partnerhub.db import add_shared_tables

metadata = sa.MetaData()
add_shared_tables(metadata)
