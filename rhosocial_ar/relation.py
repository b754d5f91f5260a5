"""Relations between models, also across databases, with eager loading.

    class User(IntegerPKMixin, ActiveRecord):
        posts: ClassVar[HasMany['Post']] = HasMany(foreign_key='user_id', inverse_of='user')

    class Post(IntegerPKMixin, ActiveRecord):
        __connection__ = 'blog'
        user_id: int
        user: ClassVar[BelongsTo['User']] = BelongsTo(foreign_key='user_id', inverse_of='posts')

    user.posts()                           # list[Post]: SELECT ... WHERE user_id = ?, on 'blog'
    post.user(reload=True)                 # User | None, queried again instead of cached
    User.where(...).with_('posts').all()   # one query per relation, never one per user

Each relation query runs on the related model's own connection; results are
cached on the record.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import typing
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pydantic import BaseModel

from . import aio, dialects, registry, routing, sharding
from .errors import ConfigurationError, QueryError

if TYPE_CHECKING:
    from .model import ActiveRecord
    from .query import Query

__all__ = ["Accessor", "BelongsTo", "HasMany", "HasOne", "Relation", "eager_load", "relations_of"]

T = TypeVar("T", bound="ActiveRecord")
R = TypeVar("R", covariant=True)   # what an accessor's call returns: list[T] or T | None

# IN lists stay this far below a dialect's bound-parameter limit, leaving room
# for the other parameters of the statement (scopes, filters)
_IN_MARGIN = 64


def in_chunk_size(dialect: Any) -> int:
    """How many keys one IN list may carry on this dialect."""
    return max(1, dialects.max_bind_params(dialect) - _IN_MARGIN)


def _chunks(values: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


class Relation(Generic[T]):
    """A named link from one model (the owner) to another (the target)."""

    many = False

    def __init__(self, foreign_key: str, inverse_of: str | None = None, *,
                 model: type | str | None = None, primary_key: str | None = None) -> None:
        self.foreign_key = foreign_key
        self.inverse_of = inverse_of
        self.primary_key = primary_key
        self._target_spec: type | str | None = model
        self._target: type | None = None
        self.owner: Any = None
        self.name = ""

    # -- declaration --------------------------------------------------------

    def __set_name__(self, owner: type, name: str) -> None:
        self.owner, self.name = owner, name
        _spell_classvar(owner, name)   # runs before pydantic reads the annotations

    def bind(self, owner: type, name: str, annotation: Any) -> None:
        """Called when the owner model is compiled; reads the target from the annotation."""
        self.owner, self.name = owner, name
        if self._target_spec is None:
            self._target_spec = _target_from_annotation(annotation)
        if self._target_spec is None:
            raise ConfigurationError(
                f"{owner.__name__}.{name}: cannot tell the related model; declare it as "
                f"ClassVar[{type(self).__name__}['Model']] or pass model="
            )

    @property
    def target(self) -> Any:
        """The related model class (resolved on first use)."""
        if self._target is None:
            spec = self._target_spec
            self._target = spec if isinstance(spec, type) else _resolve(self.owner, str(spec))
        return self._target

    def _keys(self) -> tuple[str, str]:
        """(column on the owner, column on the target) that must be equal."""
        raise NotImplementedError

    def check(self) -> None:
        owner_key, target_key = self._keys()
        self.owner.__ar_meta__.column(owner_key)
        self.target.__ar_meta__.column(target_key)

    # -- access -----------------------------------------------------------------

    def __get__(self, record: Any, owner: type) -> Any:
        if record is None:
            return self
        return Accessor(self, record)

    def cached(self, record: Any) -> Any:
        cache = record._ar_relations
        return _MISSING if cache is None else cache.get(self.name, _MISSING)

    def store(self, record: Any, value: Any) -> None:
        cache = record._ar_relations
        if cache is None:
            cache = {}
            object.__setattr__(record, "_ar_relations", cache)   # a slot, past pydantic
        cache[self.name] = value

    def load(self, record: Any) -> Any:
        """Query the related record(s) for one owner record."""
        owner_key, target_key = self._keys()
        value = getattr(record, owner_key, None)
        if value is None:
            found: list[Any] = []
        else:
            query = self.target.where(**{target_key: value})
            found = query.all() if self.many else query.limit(1).all()
        result = self._shape(found)
        self.store(record, result)
        self._fill_inverse(record, found, self._inverse_name())
        return result

    def _shape(self, found: list[Any]) -> Any:
        return found if self.many else (found[0] if found else None)

    def _inverse_name(self) -> str | None:
        """The target's relation back to the owner, when it holds one record, else None."""
        if not self.inverse_of:
            return None
        inverse = getattr(self.target, self.inverse_of, None)
        if not isinstance(inverse, Relation):
            raise ConfigurationError(
                f"{self.owner.__name__}.{self.name}: inverse_of={self.inverse_of!r} is not a "
                f"relation of {self.target.__name__}"
            )
        return None if inverse.many else inverse.name   # one record is not the whole collection

    def _fill_inverse(self, record: Any, related: Iterable[Any], name: str | None) -> None:
        """Point the related records back at ``record`` (relation ``name``) without a query."""
        if name is None:
            return
        set_relations = None
        for item in related:   # inverse.store(item, record), inline: once per loaded record
            cache = item._ar_relations
            if cache is None:
                if set_relations is None:
                    set_relations = _slot_setter(type(item))
                set_relations(item, {name: record})
            else:
                cache[name] = record

    # -- eager loading ------------------------------------------------------

    def eager(self, records: Sequence[Any], query: Any = None) -> list[Any]:
        """Load this relation for many owner records with one query per IN chunk."""
        owner_key, target_key = self._keys()
        keys = list(dict.fromkeys(
            v for v in (getattr(r, owner_key, None) for r in records) if v is not None
        ))
        found: list[Any] = []
        if keys:
            base = query if query is not None else self.target.query()
            # a sharded target reads several shards: the smallest of their limits
            size = min(in_chunk_size(routing.get_connection(name).dialect)
                       for name in sharding.read_connections(base))
            for chunk in _chunks(keys, size):
                found.extend(base.where(**{target_key: list(chunk)}).all())
        grouped: dict[Any, list[Any]] = defaultdict(list)
        for item in found:
            grouped[item.__dict__[target_key]].append(item)
        inverse = self._inverse_name()
        for record in records:
            related = grouped.get(record.__dict__.get(owner_key), [])
            self.store(record, self._shape(related))
            self._fill_inverse(record, related, inverse)
        return found

    def __repr__(self) -> str:
        target = self._target_spec if not isinstance(self._target_spec, type) else (
            self._target_spec.__name__)
        owner = getattr(self.owner, "__name__", "?")
        return f"<{type(self).__name__} {owner}.{self.name} -> {target}>"


# Each kind's __get__ is spelled out for type checkers (overloads): on the class the
# relation itself, on a record an Accessor whose call returns list[T] or T | None.

class BelongsTo(Relation[T]):
    """The owner holds ``foreign_key``, pointing at the target's primary key."""

    def _keys(self) -> tuple[str, str]:
        return self.foreign_key, self.primary_key or _single_pk(self.target)

    @overload
    def __get__(self, record: None, owner: type) -> BelongsTo[T]: ...
    @overload
    def __get__(self, record: object, owner: type) -> Accessor[T, T | None]: ...
    def __get__(self, record: Any, owner: type) -> Any:
        return self if record is None else Accessor(self, record)


class HasMany(Relation[T]):
    """The target holds ``foreign_key``, pointing at the owner's primary key."""

    many = True

    def _keys(self) -> tuple[str, str]:
        return self.primary_key or _single_pk(self.owner), self.foreign_key

    @overload
    def __get__(self, record: None, owner: type) -> HasMany[T]: ...
    @overload
    def __get__(self, record: object, owner: type) -> Accessor[T, list[T]]: ...
    def __get__(self, record: Any, owner: type) -> Any:
        return self if record is None else Accessor(self, record)


class HasOne(Relation[T]):
    """Like ``HasMany``, for at most one related record."""

    _keys = HasMany._keys

    @overload
    def __get__(self, record: None, owner: type) -> HasOne[T]: ...
    @overload
    def __get__(self, record: object, owner: type) -> Accessor[T, T | None]: ...
    def __get__(self, record: Any, owner: type) -> Any:
        return self if record is None else Accessor(self, record)


class Accessor(Generic[T, R]):
    """``user.posts``: call it for the (cached) related records, ``query()`` to filter them."""

    __slots__ = ("relation", "record")

    def __init__(self, relation: Relation[T], record: Any) -> None:
        self.relation, self.record = relation, record

    def __call__(self, reload: bool = False) -> R:
        if not reload:
            cached = self.relation.cached(self.record)
            if cached is not _MISSING:
                return cached  # type: ignore[no-any-return]
        return self.relation.load(self.record)  # type: ignore[no-any-return]

    async def aload(self, reload: bool = False) -> R:
        """``user.posts()``, awaited: async code loads a relation with this or ``with_()``."""
        return await aio.run(self, reload)

    def query(self) -> Query[T]:
        """The related records as a query, to filter further (never cached)."""
        owner_key, target_key = self.relation._keys()
        return self.relation.target.where(**{target_key: getattr(self.record, owner_key)})

    def __repr__(self) -> str:
        return f"<{self.relation!r} of {self.record!r}>"


_MISSING = object()


_setters: list[Any] = []


def _slot_setter(model: type) -> Any:
    """The ``_ar_relations`` slot's own setter (every model's: ActiveRecord declares it), found
    once: object.__setattr__ looks the slot up on every call."""
    if not _setters:
        owner = next(k for k in model.__mro__ if "_ar_relations" in vars(k))
        _setters.append(vars(owner)["_ar_relations"].__set__)
    return _setters[0]


def _single_pk(model: Any) -> str:
    pks = model.__ar_meta__.require_pk("relate records")
    if len(pks) != 1:
        raise ConfigurationError(f"{model.__name__}: relations need a single-column primary key")
    return pks[0]


def _target_from_annotation(annotation: Any) -> type | str | None:
    """``ClassVar[HasMany['Post']]`` -> 'Post', however much of it is a string.

    Strings are parsed, not evaluated: ``"ar.HasMany[Post]"``,
    ``"typing.ClassVar[ar.HasMany['Post']]"`` and ``ClassVar["HasMany[Post]"]``
    all name 'Post' (a dotted name gives its last part).
    """
    if annotation is None:
        return None
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        return _target_from_text(annotation)
    if typing.get_origin(annotation) is typing.ClassVar:
        args = typing.get_args(annotation)
        return _target_from_annotation(args[0]) if args else None
    args = typing.get_args(annotation)
    if not args:
        return None
    arg = args[0]
    if isinstance(arg, typing.ForwardRef):
        return _name_of(arg.__forward_arg__)
    if isinstance(arg, str):
        return _name_of(arg)
    return arg if isinstance(arg, type) else None


def _target_from_text(text: str) -> str | None:
    """The model named in the text of ``[ClassVar[]Relation[Model][]]``."""
    try:
        node: ast.expr | None = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None
    if isinstance(node, ast.Subscript) and _last_part(node.value) == "ClassVar":
        node = node.slice
    if isinstance(node, ast.Constant) and isinstance(node.value, str):   # ClassVar['HasMany[Post]']
        return _target_from_text(node.value)
    if not isinstance(node, ast.Subscript):
        return None
    target = node.slice
    if isinstance(target, ast.Constant) and isinstance(target.value, str):
        return _name_of(target.value)
    return _last_part(target)


def _last_part(node: ast.expr) -> str | None:
    """'Post' for ``Post`` and ``models.Post``; None for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _name_of(text: str) -> str | None:
    name = text.strip().rpartition(".")[2]
    return name if name.isidentifier() else None


_DOTTED_CLASSVAR = re.compile(r"\s*(?:\w+\.)+ClassVar\[")


@functools.cache
def _pydantic_misses_dotted_classvar() -> bool:
    """Whether this pydantic takes the string ``'typing.ClassVar[...]'`` for a field (older 2.x do,
    when it names a class not defined yet)."""
    annotations = {"probe": "typing.ClassVar[NotDefinedYet]"}
    namespace = {"__module__": __name__, "__annotations__": annotations, "probe": 0}
    metaclass: Any = type(BaseModel)
    return "probe" in metaclass("Probe", (BaseModel,), namespace).model_fields


def _spell_classvar(owner: type, name: str) -> None:
    """A relation annotated ``'typing.ClassVar[...]'`` as ``'ClassVar[...]'``, where pydantic
    knows only the latter."""
    annotations = owner.__dict__.get("__annotations__") or {}
    annotation = annotations.get(name)
    if (isinstance(annotation, str) and _DOTTED_CLASSVAR.match(annotation)
            and _pydantic_misses_dotted_classvar()):
        annotations[name] = _DOTTED_CLASSVAR.sub("ClassVar[", annotation, count=1)

def _resolve(owner: Any, name: str) -> type:
    """A model named ``name``: in the owner's module first, then any model by that name."""
    module = sys.modules.get(owner.__module__)
    found = getattr(module, name, None) if module else None
    if isinstance(found, type) and hasattr(found, "__ar_meta__"):
        return found
    candidates = registry.models_named(name)
    same_module = [m for m in candidates if m.__module__ == owner.__module__]
    if same_module or candidates:
        return (same_module or candidates)[-1]
    raise ConfigurationError(f"{owner.__name__}: no model named {name!r} for a relation")


# per model: (the size of each class's namespace along its MRO, its relations); walking
# ActiveRecord's and pydantic's namespaces ran on every eager load, twice
_relations: weakref.WeakKeyDictionary[type, tuple[tuple[int, ...], dict[str, Relation[Any]]]] = (
    weakref.WeakKeyDictionary())


def relations_of(model: Any) -> dict[str, Relation[Any]]:
    """The model's relations by name, in declaration order (a new dict each call)."""
    mro = model.__mro__
    sizes = tuple([len(vars(klass)) for klass in mro])   # an attribute set later: walked again
    known = _relations.get(model)
    if known is not None and known[0] == sizes:
        return dict(known[1])
    found: dict[str, Relation[Any]] = {}
    for klass in reversed(mro):
        for name, value in vars(klass).items():
            if isinstance(value, Relation):
                found[name] = value
    _relations[model] = (sizes, found)
    return dict(found)


def eager_load(model: Any, records: list[Any], paths: Sequence[Any]) -> None:
    """Load ``paths`` like ``'posts'`` and ``'posts.comments'`` for ``records``.

    A path may come as ``(path, condition)``: the relation's query is
    ``condition(Target.query())``, so ``lambda q: q.where(published=True).order_by('-id')``
    loads only those, in that order, still in one query per relation.
    """
    if not records:
        return
    tree: dict[str, Any] = {}
    conditions: dict[tuple[str, ...], Any] = {}
    for path in paths:
        condition = None
        if isinstance(path, tuple):
            path, condition = path
        parts = tuple(path.split("."))
        node = tree
        for part in parts:
            node = node.setdefault(part, {})
        if condition is not None:
            if conditions.get(parts, condition) is not condition:
                raise QueryError(f"with_(): two conditions for {path!r}; give it one")
            conditions[parts] = condition
    _load_tree(model, records, tree, conditions, ())


def _conditioned(relation: Relation[Any], condition: Any, path: str) -> Any:
    """The related model's query as ``condition`` makes it, checked to be one that can load."""
    target = relation.target
    query = condition(target.query())
    if getattr(query, "model", None) is not target or not hasattr(query, "where"):
        raise QueryError(f"with_(({path!r}, ...)): the function must return a query of "
                         f"{target.__name__}, e.g. lambda q: q.where(...), not {query!r}")
    if query._limit is not None or query._offset is not None:
        # one query serves every owner: a limit would cut across them, not per owner
        raise QueryError(f"with_(({path!r}, ...)): limit() and offset() apply to all owners "
                         f"together; leave them out")
    key = relation._keys()[1]
    if query._select is not None and key not in query._select:
        raise QueryError(f"with_(({path!r}, ...)): select() must include {key!r}, "
                         f"which ties each {query.model.__name__} to its owner")
    return query


def _load_tree(model: Any, records: list[Any], tree: dict[str, Any],
               conditions: dict[tuple[str, ...], Any], prefix: tuple[str, ...]) -> None:
    relations = relations_of(model)
    for name, subtree in tree.items():
        relation = relations.get(name)
        if relation is None:
            raise QueryError(
                f"{model.__name__} has no relation {name!r}; relations: "
                f"{', '.join(relations) or 'none'}"
            )
        path = (*prefix, name)
        condition = conditions.get(path)
        query = None if condition is None else _conditioned(relation, condition, ".".join(path))
        found = relation.eager(records, query)
        if subtree:
            _load_tree(relation.target, found, subtree, conditions, path)
