"""The vector index: one Qdrant collection per corpus, kept in step with its sources.

Two implementations behind one interface:

* :class:`ServerIndex` (``QDRANT_URL`` set): a Qdrant server holds the collections,
  with payload indexes for filtering; every process talks to it.
* :class:`EmbeddedIndex` (default): Qdrant's local mode. A local *path* may be opened
  by one process only (qdrant-client locks the folder), and prefork workers, the CLI
  and the demo are many processes; so the points (payload, content hash and float32
  vector) are kept in Redis, shared and persistent, and each process serves queries
  from an in-memory local-mode Qdrant it refreshes from a per-corpus change log.
  Restarting re-reads vectors; nothing is re-embedded.

Syncing is incremental by content hash: unchanged chunks are not re-embedded, and
chunks whose source disappeared leave the index.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import redis
from pydantic import BaseModel
from qdrant_client import QdrantClient, models

from cortex_school.validation.rag.chunking import Chunk
from cortex_school.validation.rag.embedding import Embedder

CORPORA: tuple[str, ...] = ("docs", "gitops", "improvements", "known_issues")
KEYWORD_FIELDS: dict[str, tuple[str, ...]] = {
    "docs": ("document", "section"),
    "gitops": ("kind", "name", "namespace", "image_repositories", "file"),
    "improvements": ("improvement_id", "category", "video_id"),
    "known_issues": ("document", "section"),
}
BATCH = 64  # chunks embedded and written at a time (and a progress step)


class Hit(BaseModel):
    id: str
    score: float
    text: str
    payload: dict[str, Any]


@dataclass
class SyncReport:
    corpus: str
    total: int = 0
    embedded: int = 0
    unchanged: int = 0
    deleted: int = 0
    problems: list[str] = field(default_factory=list)


class VectorIndex(ABC):
    """Lifecycle: ``sync`` or ``add`` write; ``search`` and ``inventory`` read and never
    write. Vectors are normalised (cosine = dot product)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    # -- storage verbs ---------------------------------------------------------------
    @abstractmethod
    def stored(self, corpus: str) -> dict[str, tuple[str, str]]:
        """id → (content hash, source) of every stored point."""

    @abstractmethod
    def _write(self, corpus: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    @abstractmethod
    def _delete(self, corpus: str, ids: Sequence[str]) -> None: ...

    @abstractmethod
    def search(self, corpus: str, vector: np.ndarray, limit: int) -> list[Hit]: ...

    @abstractmethod
    def inventory(self, corpus: str) -> list[dict[str, Any]]:
        """Every point's payload (used for exact-name lookups)."""

    @abstractmethod
    def count(self, corpus: str) -> int: ...

    # -- shared logic ------------------------------------------------------------------
    def sync(self, corpus: str, chunks: Iterable[Chunk], *, sources: set[str] | None = None,
             source_prefix: str | None = None, progress: Callable[[int, int], None] | None = None) -> SyncReport:
        """Make ``corpus`` hold exactly ``chunks`` (within ``sources``, or the sources under
        ``source_prefix``, if given: the rest of the corpus is left as it is). ``progress``
        is called with (embedded so far, to embed) after each batch."""
        wanted = {c.id: c for c in chunks}
        existing = self.stored(corpus)
        changed = [c for i, c in wanted.items() if existing.get(i, ("", ""))[0] != c.content_hash]
        stale = [i for i, (_, src) in existing.items()
                 if i not in wanted and (sources is None or src in sources)
                 and (source_prefix is None or src.startswith(source_prefix))]
        for start in range(0, len(changed), BATCH):
            batch = changed[start:start + BATCH]
            self._write(corpus, batch, self.embedder.encode([c.text for c in batch]))
            if progress is not None:
                progress(start + len(batch), len(changed))
        if stale:
            self._delete(corpus, stale)
        return SyncReport(corpus=corpus, total=len(wanted), embedded=len(changed),
                          unchanged=len(wanted) - len(changed), deleted=len(stale))

    def add(self, corpus: str, chunk: Chunk, vector: np.ndarray | None = None) -> None:
        """Upsert one chunk, reusing an already computed vector when given."""
        if self.stored_hash(corpus, chunk.id) == chunk.content_hash:
            return
        vec = vector.reshape(1, -1) if vector is not None else self.embedder.encode([chunk.text])
        self._write(corpus, [chunk], vec)

    def stored_hash(self, corpus: str, point_id: str) -> str | None:
        return self.stored(corpus).get(point_id, (None, ""))[0]


def _point_payload(chunk: Chunk) -> dict[str, Any]:
    return {**chunk.payload, "source": chunk.source, "key": chunk.key, "text": chunk.text,
            "content_hash": chunk.content_hash}


def _payload(point: models.Record | models.ScoredPoint) -> dict[str, Any]:
    """A point's payload. Qdrant types it Optional (None when it was not asked for); every
    read here asks for it (``with_payload``)."""
    return cast("dict[str, Any]", point.payload)


class ServerIndex(VectorIndex):
    def __init__(self, url: str, embedder: Embedder, *, prefix: str = "cortex_") -> None:
        super().__init__(embedder)
        self.client = QdrantClient(url=url, timeout=30)
        self.prefix = prefix
        self._ready: set[str] = set()

    def _collection(self, corpus: str) -> str:
        name = self.prefix + corpus
        if name not in self._ready:
            if not self.client.collection_exists(name):
                self.client.create_collection(name, vectors_config=models.VectorParams(
                    size=self.embedder.dim, distance=models.Distance.COSINE))
                for fieldname in ("source", *KEYWORD_FIELDS.get(corpus, ())):
                    self.client.create_payload_index(name, fieldname, models.PayloadSchemaType.KEYWORD)
            self._ready.add(name)
        return name

    def _scroll(self, corpus: str, fields: Any) -> list[Any]:
        points, offset = [], None
        while True:
            batch, offset = self.client.scroll(self._collection(corpus), limit=1000, offset=offset,
                                               with_payload=fields, with_vectors=False)
            points += batch
            if offset is None:
                return points

    def stored(self, corpus: str) -> dict[str, tuple[str, str]]:
        return {str(p.id): (p.payload.get("content_hash", ""), p.payload.get("source", ""))
                for p in self._scroll(corpus, ["content_hash", "source"])}

    def stored_hash(self, corpus: str, point_id: str) -> str | None:
        found = self.client.retrieve(self._collection(corpus), [point_id], with_payload=["content_hash"])
        return _payload(found[0]).get("content_hash") if found else None

    def _write(self, corpus: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self.client.upsert(self._collection(corpus), points=[
            models.PointStruct(id=c.id, vector=v.tolist(), payload=_point_payload(c))
            for c, v in zip(chunks, vectors, strict=True)])

    def _delete(self, corpus: str, ids: Sequence[str]) -> None:
        self.client.delete(self._collection(corpus), points_selector=models.PointIdsList(points=list(ids)))

    def search(self, corpus: str, vector: np.ndarray, limit: int) -> list[Hit]:
        result = self.client.query_points(self._collection(corpus), query=vector.tolist(),
                                          limit=limit, with_payload=True)
        return [Hit(id=str(p.id), score=p.score, text=_payload(p).get("text", ""), payload=p.payload)
                for p in result.points]

    def inventory(self, corpus: str) -> list[dict[str, Any]]:
        return [p.payload for p in self._scroll(corpus, True)]

    def count(self, corpus: str) -> int:
        return self.client.count(self._collection(corpus), exact=True).count


_WRITE_LUA = """
-- KEYS: points hash, vectors hash, log zset, version. ARGV: n, then id, point json, vector bytes...
local v = redis.call('INCR', KEYS[4])
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local id = ARGV[2 + i * 3]
  redis.call('HSET', KEYS[1], id, ARGV[3 + i * 3])
  redis.call('HSET', KEYS[2], id, ARGV[4 + i * 3])
  redis.call('ZADD', KEYS[3], v, id)
end
return v
"""

_DELETE_LUA = """
local v = redis.call('INCR', KEYS[4])
for _, id in ipairs(ARGV) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZADD', KEYS[3], v, id)
end
return v
"""


class EmbeddedIndex(VectorIndex):
    """Points in Redis (shared, persistent); queries from a per-process in-memory Qdrant."""

    def __init__(self, redis_url: str, embedder: Embedder, *, prefix: str = "rag") -> None:
        super().__init__(embedder)
        self.redis = redis.Redis.from_url(redis_url)  # binary-safe: vectors are bytes
        self.prefix = prefix
        self.local = QdrantClient(":memory:")
        self._versions: dict[str, int] = {}
        self._inventory: dict[str, tuple[int, list[dict[str, Any]]]] = {}
        self._write_script = self.redis.register_script(_WRITE_LUA)
        self._delete_script = self.redis.register_script(_DELETE_LUA)

    def _keys(self, corpus: str) -> list[str]:
        base = f"{self.prefix}:{corpus}"
        return [f"{base}:points", f"{base}:vectors", f"{base}:log", f"{base}:version"]

    def stored(self, corpus: str) -> dict[str, tuple[str, str]]:
        out = {}
        for pid, raw in cast("dict[bytes, bytes]", self.redis.hgetall(self._keys(corpus)[0])).items():
            point = json.loads(raw)
            out[pid.decode()] = (point["content_hash"], point["source"])
        return out

    def stored_hash(self, corpus: str, point_id: str) -> str | None:
        raw = self.redis.hget(self._keys(corpus)[0], point_id)
        return json.loads(raw)["content_hash"] if raw else None

    def _write(self, corpus: str, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        args: list[Any] = [len(chunks)]
        for chunk, vector in zip(chunks, vectors, strict=True):
            args += [chunk.id, json.dumps(_point_payload(chunk), default=str),
                     np.asarray(vector, dtype=np.float32).tobytes()]
        self._write_script(keys=self._keys(corpus), args=args)

    def _delete(self, corpus: str, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), 1000):
            self._delete_script(keys=self._keys(corpus), args=list(ids[start:start + 1000]))

    def version(self, corpus: str) -> int:
        return int(self.redis.get(self._keys(corpus)[3]) or 0)

    def _refresh(self, corpus: str) -> None:
        """Bring this process's in-memory collection up to the Redis version."""
        points_key, vectors_key, log_key, _ = self._keys(corpus)
        current = self.version(corpus)
        mine = self._versions.get(corpus)
        if mine == current:
            return
        if mine is not None and current < mine:
            mine = None  # the corpus was dropped and rebuilt: reload from scratch
        if mine is None:
            if self.local.collection_exists(corpus):
                self.local.delete_collection(corpus)
            self.local.create_collection(corpus, vectors_config=models.VectorParams(
                size=self.embedder.dim, distance=models.Distance.COSINE))
            ids = [i.decode() for i in cast("list[bytes]", self.redis.hkeys(points_key))]
        else:
            ids = [i.decode() for i in cast("list[bytes]",
                                            self.redis.zrangebyscore(log_key, f"({mine}", current))]
        for start in range(0, len(ids), 1000):
            batch = ids[start:start + 1000]
            payloads = self.redis.hmget(points_key, batch)
            vectors = cast("list[bytes | None]", self.redis.hmget(vectors_key, batch))
            # The mirror keeps payloads without their text (fetched for the few hits only).
            present = [(i, {k: v for k, v in json.loads(p).items() if k != "text"},
                        np.frombuffer(v, dtype=np.float32))
                       for i, p, v in zip(batch, payloads, vectors, strict=True) if p is not None and v is not None]
            gone = [i for i, p in zip(batch, payloads, strict=True) if p is None]
            if present:
                self.local.upsert(corpus, points=models.Batch(
                    ids=[i for i, _, _ in present], vectors=[v.tolist() for _, _, v in present],
                    payloads=[p for _, p, _ in present]))
            if gone and mine is not None:
                self.local.delete(corpus, points_selector=models.PointIdsList(points=gone))
        self._versions[corpus] = current

    def search(self, corpus: str, vector: np.ndarray, limit: int) -> list[Hit]:
        self._refresh(corpus)
        points = self.local.query_points(corpus, query=vector.tolist(), limit=limit,
                                         with_payload=True).points
        if not points:
            return []
        stored = self.redis.hmget(self._keys(corpus)[0], [str(p.id) for p in points])
        texts = [json.loads(raw).get("text", "") if raw else "" for raw in stored]
        return [Hit(id=str(p.id), score=p.score, text=text, payload=p.payload)
                for p, text in zip(points, texts, strict=True)]

    def inventory(self, corpus: str) -> list[dict[str, Any]]:
        current = self.version(corpus)
        cached = self._inventory.get(corpus)
        if cached is None or cached[0] != current:
            points = [json.loads(raw) for raw in self.redis.hvals(self._keys(corpus)[0])]
            self._inventory[corpus] = (current, points)
        return self._inventory[corpus][1]

    def count(self, corpus: str) -> int:
        return int(self.redis.hlen(self._keys(corpus)[0]))

    def drop(self, corpus: str) -> None:
        self.redis.delete(*self._keys(corpus))
        self._versions.pop(corpus, None)
