"""Statements for many rows with one parameter per column (a PostgreSQL array) instead of one per value.

psycopg builds a query's text in Python, placeholder by placeholder (client-side binding): for the agent broker's
batches — `IN (%s, %s, …)` with a thousand ids, a multi-row INSERT with fifteen placeholders a row — building the
text cost more than PostgreSQL took to run the statement. Each helper does what the ORM's way does, as the ORM's way
on other databases.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection
from django.db.models import Field, Model
from django.db.models.lookups import In


@Field.register_lookup
class AnyOf(In):
    """`field__any_of=[…]`: `__in`, sent to PostgreSQL as `field = ANY(%s)` with the values as one array."""

    lookup_name = "any_of"

    def as_postgresql(self, compiler, connection):
        if not isinstance(self.rhs, list | tuple | set | frozenset):
            return super().as_sql(compiler, connection)  # a subquery: `IN (SELECT …)` as usual
        lhs, lhs_params = self.process_lhs(compiler, connection)
        field = self.lhs.output_field
        values = [field.get_db_prep_value(v, connection, prepared=False) for v in self.rhs if v is not None]
        return f"{lhs} = ANY(%s::{field.rel_db_type(connection)}[])", (*lhs_params, values)


def insert_rows(objs: Sequence[Model]) -> None:
    """`bulk_create(objs)` without setting their primary keys: on PostgreSQL one `INSERT … SELECT FROM unnest(…)`."""
    if not objs:
        return
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objs)
        return
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    columns = [[f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs] for f in fields]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(str(f.column)) for f in fields)})"
            f" SELECT * FROM unnest({', '.join(f'%s::{f.db_type(connection)}[]' for f in fields)})",
            columns,
        )


def update_rows(objs: Sequence[Model], names: Sequence[str]) -> None:
    """Write these fields of each object to its row: on PostgreSQL one `UPDATE … FROM unnest(…)`, elsewhere one
    parametrised UPDATE per row (executemany). bulk_update's CASE expression costs far more to build than to run."""
    if not objs:
        return
    meta = type(objs[0])._meta
    fields: list = [meta.get_field(name) for name in names]
    pk = meta.pk
    assert pk is not None
    quote = connection.ops.quote_name
    table, pk_column = quote(meta.db_table), quote(str(pk.column))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            arrays = [[obj.pk for obj in objs]] + [
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for obj in objs] for f in fields
            ]
            types = [pk.rel_db_type(connection)] + [f.db_type(connection) for f in fields]
            aliases = ["id"] + [f"c{n}" for n in range(len(fields))]
            cursor.execute(
                f"UPDATE {table} SET "
                + ", ".join(f"{quote(str(f.column))} = v.c{n}" for n, f in enumerate(fields))
                + f" FROM unnest({', '.join(f'%s::{t}[]' for t in types)}) AS v({', '.join(aliases)})"
                f" WHERE {table}.{pk_column} = v.id",
                arrays,
            )
            return
        cursor.executemany(
            f"UPDATE {table} SET "
            + ", ".join(f"{quote(str(f.column))} = %s" for f in fields)
            + f" WHERE {pk_column} = %s",
            [
                [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields] + [obj.pk]
                for obj in objs
            ],
        )
