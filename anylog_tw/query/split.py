"""The two statements of a network query, built from the parsed SELECT.

`Split` adds the operators' columns one by one (group keys, distinct keys, partial aggregates,
plain columns, hidden order columns) and writes the merge query over them.  Which partials an
aggregate needs, and when a LIMIT may go to the operators, is explained in `rewrite`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from anylog_tw.query.errors import QueryError, Unmergeable
from anylog_tw.query.plan import Extend, placeholder_table

_MERGEABLE = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)
# aggregates sqlglot does not know as such: refused, since they cannot be combined
_OTHER_AGGREGATES = {"total", "group_concat", "string_agg", "json_group_array", "json_group_object",
                     "median", "mode", "percentile", "stddev", "variance", "array_agg", "bool_and",
                     "bool_or", "every", "bit_and", "bit_or"}
_ANYLOG_FUNCTIONS = {"increments", "period", "range"}


def _canon(e: exp.Expression) -> str:
    return e.sql(dialect="sqlite")


def _unalias(e: exp.Expression) -> exp.Expression:
    return e.this if isinstance(e, exp.Alias) else e


def _is_range(e: exp.Expression) -> bool:
    return isinstance(e, exp.Anonymous) and e.name.lower() == "range"


def _is_aggregate(e: exp.Expression) -> bool:
    return isinstance(e, _MERGEABLE) or _is_range(e)


def _check_refused(e: exp.Expression) -> None:
    for node in e.walk():
        if isinstance(node, (exp.Window, exp.WindowSpec)):
            raise Unmergeable("window functions (OVER ...) cannot be merged across operators")
        if isinstance(node, (exp.Subquery, exp.Exists)) or (isinstance(node, exp.Select) and node is not e):
            raise Unmergeable("sub-queries are not supported in a network query")
        if isinstance(node, exp.AggFunc) and not isinstance(node, _MERGEABLE):
            raise Unmergeable(f"the aggregate '{node.sql(dialect='sqlite')}' cannot be merged across "
                              f"operators (supported: count, sum, min, max, avg, range)")
        if isinstance(node, exp.Anonymous) and node.name.lower() in _OTHER_AGGREGATES:
            raise Unmergeable(f"the aggregate '{node.name}' cannot be merged across operators (supported: "
                              f"count, sum, min, max, avg, range)")
        if isinstance(node, (exp.Min, exp.Max)) and node.expressions:
            raise Unmergeable(f"'{node.sql(dialect='sqlite')}': min/max take one column in a network query")


@dataclass
class _Item:
    expr: exp.Expression      # without alias
    title: str
    alias: str | None
    casts: tuple


@dataclass
class _Builder:
    """The operators' columns as they are added: (name, expression, logical type)."""

    remote: list[tuple[str, exp.Expression, str | None]] = field(default_factory=list)
    partials: dict[str, str] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    def add(self, prefix: str, e: exp.Expression, typ: str | None) -> str:
        name = f"{prefix}_{len(self.remote) + 1}"
        self.remote.append((name, e, typ))
        return name

    def partial(self, kind: str, e: exp.Expression, typ: str | None) -> exp.Column:
        key = f"{kind}:{_canon(e)}"
        if key not in self.partials:
            self.partials[key] = self.add(kind, e, typ)
        return exp.column(self.partials[key], quoted=True)

    def type_of(self, e: exp.Expression) -> str | None:
        return self.types.get(e.name) if isinstance(e, exp.Column) else None




def _col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def _merge_avg(total: str, count: str) -> exp.Expression:
    return sqlglot.parse_one(f'CAST(SUM("{total}") AS REAL) / NULLIF(SUM("{count}"), 0)', read="sqlite")


class Split:
    """One query's operators' columns and merge query, built from its parsed parts."""

    def __init__(self, tree: exp.Select, original: list, items: list, builder: _Builder,
                 extend: tuple[Extend, ...], where, buckets, limit: int | None, offset: int,
                 per: tuple[int, str] | None, distinct: bool):
        self.tree, self.original, self.items, self.b = tree, original, items, builder
        self.extend, self.where, self.buckets = extend, where, buckets
        self.limit, self.offset, self.per, self.distinct = limit, offset, per, distinct
        self.star = False
        self.remote_group: list[int] = []
        self.remote_order: list[exp.Ordered] = []
        self.remote_limit: int | None = None
        self.keys: dict[str, str] = {}          # canonical expression -> merge column
        self.key_names: list[str] = []
        self.dkeys: list[str] = []

    # --- the operators' statement ---------------------------------------------------------

    def remote_select(self) -> exp.Select:
        sel = exp.Select()
        if self.star:
            sel.set("expressions", [exp.Star()])
        else:
            sel.set("expressions", [e.copy().as_(n, quoted=True) for n, e, _ in self.b.remote])
        sel.set("from_", exp.From(this=placeholder_table()))
        if self.where is not None:
            sel.set("where", self.where.copy())
        if self.remote_group:
            sel.set("group", exp.Group(expressions=[exp.Literal.number(i) for i in self.remote_group]))
        if self.distinct and not self.remote_group and self.items and not self.keys:
            sel.set("distinct", exp.Distinct())
        if self.remote_order:
            sel.set("order", exp.Order(expressions=self.remote_order))
        if self.remote_limit is not None:
            sel.set("limit", exp.Limit(expression=exp.Literal.number(self.remote_limit)))
        return sel

    # --- resolving names: ordinals, aliases, extend titles --------------------------------

    def _resolve(self, term: exp.Expression):
        """An ORDER BY / GROUP BY term -> ('item', _Item) | ('extend', index) | ('expr', term)."""
        if isinstance(term, exp.Literal) and not term.is_string and term.this.isdigit():
            k = int(term.this)
            if not 1 <= k <= len(self.original):
                raise QueryError(f"position {k} is not a column of the projection")
            item = self.original[k - 1]
            if not any(item is it for it in self.items):
                raise QueryError(f"position {k} names increments(...), which is not a column")
            return "item", item
        if isinstance(term, exp.Column) and not term.table:
            for item in self.items:
                if item.alias is not None and item.alias.lower() == term.name:
                    return "item", item
            for i, e in enumerate(self.extend):
                if e.title.lower() == term.name and not any(_canon(it.expr) == _canon(term) for it in self.items):
                    return "extend", i
        return "expr", term

    def _item_index(self, term) -> int | None:
        kind, value = self._resolve(term)
        if kind == "item":
            return next(i for i, it in enumerate(self.items) if it is value)
        if kind == "expr":
            for i, item in enumerate(self.items):
                if _canon(item.expr) == _canon(value):
                    return i
        return None

    # --- rows: no aggregate ---------------------------------------------------------------

    def rows_pass_through(self) -> None:
        if any(isinstance(i.expr, exp.Star) for i in self.items):
            if len(self.items) > 1:
                raise QueryError("'*' must be the only column when the table's columns are not known")
            self.star = True
        else:
            for item in self.items:
                self.b.add("col", item.expr, self.b.type_of(item.expr))
        self.remote_limit = self.limit

    def rows(self) -> exp.Select:
        names = [self.b.add("col", i.expr, self.b.type_of(i.expr)) for i in self.items]
        outputs = [_col(n) for n in names]
        order: list[exp.Ordered] = []
        remote_order: list[exp.Ordered] = []
        for o in (self.tree.args.get("order").expressions if self.tree.args.get("order") else []):
            kind, value = self._resolve(o.this)
            if kind == "extend":
                order.append(_ordered(o, _col(f"extend_{value + 1}")))
                continue
            idx = self._item_index(o.this)
            if idx is None:
                if self.distinct:
                    raise Unmergeable("with DISTINCT, ORDER BY must name projected columns")
                name = self.b.add("order", o.this, self.b.type_of(o.this))
            else:
                name = names[idx]
            order.append(_ordered(o, _col(name)))
            remote_order.append(_ordered(o, _col(name)))
        if self.per is None and self.limit is not None:
            self.remote_order, self.remote_limit = remote_order, self.limit + self.offset
        elif self.per is not None and self._per_target()[0] == "extend":
            self.remote_order, self.remote_limit = remote_order, self.per[0]
        return self._local(outputs, order, grouped=False, having=None)

    # --- aggregates -----------------------------------------------------------------------

    def grouped(self) -> exp.Select:
        group = self.tree.args.get("group")
        for term in (group.expressions if group else []):
            kind, value = self._resolve(term)
            if kind == "extend":
                continue  # every reply has one value: the merge groups by it anyway
            e = value.expr if kind == "item" else value
            if any(_is_aggregate(n) for n in e.walk()):
                raise QueryError(f"GROUP BY '{e.sql(dialect='sqlite')}' names an aggregate")
            if _canon(e) not in self.keys:
                name = self.b.add("key", e, self.b.type_of(e))
                self.keys[_canon(e)] = name
                self.key_names.append(name)
        bucket_names = []
        if self.buckets is not None:
            for kind, e in self.buckets.key_expressions():
                name = self.b.add(f"increments_{kind}", e, None)
                self.keys[_canon(e)] = name
                self.key_names.append(name)
                bucket_names.append(name)
        outputs = [self._map(i.expr) for i in self.items]
        having = self.tree.args.get("having")
        having = self._map(having.this) if having is not None else None
        order: list[exp.Ordered] = []
        for o in (self.tree.args.get("order").expressions if self.tree.args.get("order") else []):
            kind, value = self._resolve(o.this)
            if kind == "extend":
                order.append(_ordered(o, _col(f"extend_{value + 1}")))
            else:
                order.append(_ordered(o, self._map(value.expr if kind == "item" else value)))
        order += [exp.Ordered(this=_col(n), nulls_first=True) for n in bucket_names]
        ordinals = {n: i + 1 for i, (n, _, _) in enumerate(self.b.remote)}
        self.remote_group = [ordinals[n] for n in self.key_names + self.dkeys]
        self._push_limit(order, having)
        return self._local(outputs, order, grouped=True, having=having)

    def _push_limit(self, order: list[exp.Ordered], having) -> None:
        """Send ORDER BY + LIMIT to the operators only when each operator's first groups are sure to
        hold every group of the global first ones: the order is by all group keys (no ties
        between groups), and no HAVING or distinct key changes which groups count."""
        if self.limit is None or self.per is not None or having is not None or self.dkeys or not self.key_names:
            return
        remote, used = [], set()
        for o in order:
            if isinstance(o.this, exp.Column) and o.this.name.startswith("extend_"):
                continue
            if not (isinstance(o.this, exp.Column) and o.this.name in self.key_names):
                return
            used.add(o.this.name)
            remote.append(o.copy())
        if used == set(self.key_names):
            self.remote_order, self.remote_limit = remote, self.limit + self.offset

    def _map(self, e: exp.Expression) -> exp.Expression:
        """The user's expression over the merge table: keys become their columns, aggregates
        their merge over the partials; any other column cannot be merged."""
        def fn(node):
            if not isinstance(node, exp.Star) and _canon(node) in self.keys:
                return _col(self.keys[_canon(node)])
            if _is_aggregate(node):
                return self._merge(node)
            if isinstance(node, exp.Column):
                raise Unmergeable(f"column '{node.name}' is neither in GROUP BY nor inside an aggregate: "
                                  f"its value cannot be merged across operators")
            return node
        return e.copy().transform(fn)

    def _merge(self, agg: exp.Expression) -> exp.Expression:
        args = agg.expressions if _is_range(agg) else [agg.this]
        if len(args) != 1:
            raise Unmergeable(f"'{agg.sql(dialect='sqlite')}': one argument expected")
        arg = args[0]
        distinct = isinstance(arg, exp.Distinct)
        if distinct:
            if len(arg.expressions) != 1:
                raise Unmergeable(f"'{agg.sql(dialect='sqlite')}': DISTINCT over one column only")
            arg = arg.expressions[0]
        if arg is not None and any(_is_aggregate(n) for n in arg.walk()):
            raise QueryError(f"'{agg.sql(dialect='sqlite')}': an aggregate inside an aggregate")
        typ = self.b.type_of(arg) if arg is not None else None
        if distinct and not isinstance(agg, (exp.Min, exp.Max)) and not _is_range(agg):
            d = self._distinct_key(arg, typ)
            cls = {exp.Count: exp.Count, exp.Sum: exp.Sum, exp.Avg: exp.Avg}[type(agg)]
            return cls(this=exp.Distinct(expressions=[d]))
        if isinstance(agg, exp.Count):
            star = arg is None or isinstance(arg, exp.Star)
            p = self.b.partial("count_all" if star else "count", exp.Count(this=exp.Star() if star else arg.copy()),
                               "integer")
            return exp.Coalesce(this=exp.Sum(this=p), expressions=[exp.Literal.number(0)])
        if isinstance(agg, exp.Sum):
            return exp.Sum(this=self.b.partial("sum", exp.Sum(this=arg.copy()), _numeric(typ)))
        if isinstance(agg, (exp.Min, exp.Max)):
            cls = type(agg)
            return cls(this=self.b.partial(cls.__name__.lower(), cls(this=arg.copy()), typ))
        if isinstance(agg, exp.Avg):
            s = self.b.partial("sum", exp.Sum(this=arg.copy()), _numeric(typ))
            c = self.b.partial("count", exp.Count(this=arg.copy()), "integer")
            return _merge_avg(s.name, c.name)
        lo = self.b.partial("range_min", exp.Min(this=arg.copy()), typ)
        hi = self.b.partial("range_max", exp.Max(this=arg.copy()), typ)
        return exp.Paren(this=exp.Sub(this=exp.Max(this=hi), expression=exp.Min(this=lo)))

    def _distinct_key(self, arg: exp.Expression, typ) -> exp.Column:
        col = self.b.partial("distinct", arg.copy(), typ)
        if col.name not in self.dkeys:
            self.dkeys.append(col.name)
        return col

    # --- the merge statement --------------------------------------------------------------

    def _per_target(self) -> tuple[str, int]:
        name = self.per[1]
        for i, e in enumerate(self.extend):
            if e.title.lower() == name or e.name.lower() == name:
                return "extend", i
        for i, item in enumerate(self.items):
            if item.title.lower() == name or (isinstance(item.expr, exp.Column) and item.expr.name == name):
                return "item", i
        raise QueryError(f"'limit N per {name}': '{name}' is not a column of the result")

    def _local(self, outputs: list[exp.Expression], order: list[exp.Ordered], grouped: bool,
               having) -> exp.Select:
        ext = [_col(f"extend_{i + 1}") for i in range(len(self.extend))]
        titles = [e.title for e in self.extend] + [i.title for i in self.items]
        sel = exp.Select()
        sel.set("from_", exp.From(this=placeholder_table()))
        if grouped and (ext or self.key_names):
            sel.set("group", exp.Group(expressions=ext + [_col(n) for n in self.key_names]))
        if having is not None:
            sel.set("having", exp.Having(this=having))
        if self.per is None:
            sel.set("expressions", [e.as_(t, quoted=True) for e, t in zip(ext + outputs, titles)])
            if self.distinct:
                sel.set("distinct", exp.Distinct())
            if order:
                sel.set("order", exp.Order(expressions=order))
            if self.limit is not None:
                sel.set("limit", exp.Limit(expression=exp.Literal.number(self.limit)))
            if self.offset:
                sel.set("offset", exp.Offset(expression=exp.Literal.number(self.offset)))
            return sel
        if self.distinct:
            raise Unmergeable("DISTINCT cannot be combined with 'limit N per column'")
        # limit N per col: number the rows inside each value of col, keep the first N
        kind, index = self._per_target()
        columns = ext + outputs
        partition = columns[index if kind == "extend" else len(ext) + index].copy()
        inner = [e.as_(f"out_{k + 1}", quoted=True) for k, e in enumerate(columns)]
        inner += [o.this.copy().as_(f"ord_{k + 1}", quoted=True) for k, o in enumerate(order)]
        window = exp.Window(this=exp.RowNumber(), partition_by=[partition],
                            order=exp.Order(expressions=[o.copy() for o in order]) if order else None)
        inner.append(window.as_("row_in_part", quoted=True))
        sel.set("expressions", inner)
        outer = exp.Select(expressions=[_col(f"out_{k + 1}").as_(t, quoted=True) for k, t in enumerate(titles)])
        outer.set("from_", exp.From(this=exp.Subquery(this=sel, alias=exp.TableAlias(
            this=exp.to_identifier("parts", quoted=True)))))
        outer.set("where", exp.Where(this=exp.LTE(this=_col("row_in_part"),
                                                  expression=exp.Literal.number(self.per[0]))))
        if order:
            outer.set("order", exp.Order(expressions=[_ordered(o, _col(f"ord_{k + 1}"))
                                                      for k, o in enumerate(order)]))
        return outer


def _ordered(o: exp.Ordered, this: exp.Expression) -> exp.Ordered:
    out = o.copy()
    out.set("this", this)
    return out


def _numeric(typ: str | None) -> str:
    return typ if typ in ("integer", "float") else "float"
