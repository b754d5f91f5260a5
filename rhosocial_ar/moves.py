"""Shard moves in progress: a model between two shard maps while ``rebalance()`` moves its rows.

During a move the model has an old map and a new one. Writes follow the new
map (sharding.spec_of gives it); reads look at the shards of both maps
(sharding.plan: a key's new shard and its old one, or every shard of either).
Each batch of rows moves while the move's lock is held exclusively, and a read
over several shards holds it shared (fanout.gather, sharding.write), so no
read sees a batch half done: every row is on exactly one shard for it.

The lock is this process's: reads in other processes are not held back
(docs/sharding.md, "Resharding").
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Move", "begin", "end", "of", "reading"]


# the locks this context reads under: a read inside a read (or in a fan-out worker, which runs
# in a copy of the caller's context) goes on without waiting behind a mover that waits on it
_holding: ContextVar[frozenset[int]] = ContextVar("rhosocial_ar_move_reads", default=frozenset())


class SharedLock:
    """Many readers or one writer. A waiting writer goes before new readers (a stream of
    reads cannot starve the move); a read inside a held read, and the writer's own thread,
    never wait."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._waiting = 0
        self._writer: int | None = None

    @contextmanager
    def shared(self) -> Iterator[None]:
        if self._writer == threading.get_ident() or id(self) in _holding.get():
            yield
            return
        with self._cond:
            while self._writer is not None or self._waiting:
                self._cond.wait()
            self._readers += 1
        token = _holding.set(_holding.get() | {id(self)})
        try:
            yield
        finally:
            _holding.reset(token)
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._writer is not None or self._readers:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._writer = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._writer = None
                self._cond.notify_all()


@dataclass(frozen=True)
class Move:
    """A model's move from the ``old`` shard map to the ``new`` one (both ``ShardSpec``)."""

    model: Any
    old: Any
    new: Any
    lock: SharedLock = field(default_factory=SharedLock, compare=False)

    @property
    def shards(self) -> tuple[str, ...]:
        """Every shard of either map: the new map's, then the old map's others."""
        return tuple(dict.fromkeys((*self.new.shards, *self.old.shards)))

    def picks(self, value: Any) -> tuple[str, ...]:
        """Where rows with the key ``value`` may be now: its new shard, then its old one."""
        return tuple(dict.fromkeys((self.new.pick(value), self.old.pick(value))))


_moves: dict[Any, Move] = {}
_registry_lock = threading.Lock()


def of(model: Any) -> Move | None:
    """The move of ``model`` in progress in this process, if any."""
    return _moves.get(model) if _moves else None


def begin(move: Move) -> None:
    """From now on ``move.model`` writes by the new map and reads both (the caller sets the spec)."""
    with _registry_lock:
        _moves[move.model] = move


def end(model: Any) -> None:
    with _registry_lock:
        _moves.pop(model, None)


@contextmanager
def reading(shards: Sequence[str]) -> Iterator[None]:
    """Hold off the batches of any move over these shards while a read (or write) runs on them."""
    if not _moves:
        yield
        return
    names = set(shards)
    locks = [m.lock for m in list(_moves.values()) if names & set(m.shards)]
    if not locks:
        yield
        return
    with ExitStack() as held:
        for lock in locks:
            held.enter_context(lock.shared())
        yield
