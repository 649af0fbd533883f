"""Decoding one stored block of spans, and checking every value in it.

A block is trusted only after its checksum matches and every length, code,
thread, link and attribute has been checked against the block and the file
it came from. Sizes are checked before anything is allocated or
decompressed, so a damaged or crafted file costs no more memory than a real
one. Anything wrong raises ``BlockError`` with the reason; the loader skips
that block and says so.
"""

from __future__ import annotations

import json
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tracer.file.store import STRING_DTYPE, THREAD_DTYPE, TIME_DTYPE, row_crc

MAX_BLOCK_SPANS = 1 << 31  # a flush of more spans than this is not one the recorder wrote
MAX_ATTR_BYTES = 256 << 20  # one block's attribute JSON, uncompressed
MAX_SEQ = 1 << 40  # span ids share an int64 key with the part number (part << 40 | id)


class BlockError(ValueError):
    """A block that cannot be trusted; the message says why."""


@dataclass
class Block:
    """One block's columns, checked; thread and link values are still local."""

    part: int
    seq: int
    n: int
    ids: np.ndarray  # int64 span ids (start order within the process)
    threads: np.ndarray  # thread index within the part
    starts: np.ndarray
    durs: np.ndarray
    kinds: np.ndarray
    names: np.ndarray
    funcs: np.ndarray
    links: np.ndarray | None  # (k, 2): row in this block, linked span id
    attr_index: np.ndarray | None
    attrs: list[dict] | None


@dataclass(frozen=True)
class Context:
    """What a block is checked against: the file's strings and threads."""

    n_strings: int  # codes must be below this
    dense_strings: bool  # every code 1..n_strings-1 names a string
    valid_codes: np.ndarray  # bool per code, when not dense
    threads_of_part: dict[int, np.ndarray]  # part -> thread row per local index (-1: none)
    show_internal: bool = False  # keep spans of torchscope's own machinery


def _column(blob: object, dtype: np.dtype | str, n: int, what: str) -> np.ndarray:
    if not isinstance(blob, bytes):
        raise BlockError(f"{what} column missing")
    dtype = np.dtype(dtype)
    if len(blob) != n * dtype.itemsize:
        raise BlockError(f"{what} column holds {len(blob)} bytes, expected {n * dtype.itemsize}")
    return np.frombuffer(blob, dtype=dtype)


def _check_codes(col: np.ndarray, ctx: Context, what: str) -> None:
    if not len(col):
        return
    if int(col.max()) >= ctx.n_strings or int(col.min()) < 1:
        raise BlockError(f"{what} code out of range of the string table")
    if not ctx.dense_strings and not ctx.valid_codes[col].all():
        raise BlockError(f"{what} code names a missing string")


def _attributes(row: tuple, n: int) -> tuple[np.ndarray | None, list[dict] | None]:
    index_blob, blob, size = row[12], row[13], row[14]
    if index_blob is None:
        if blob is not None:
            raise BlockError("attributes without their index")
        return None, None
    index = _column(index_blob, "<i4", n, "attribute index")
    if not isinstance(size, int) or not 0 <= size <= MAX_ATTR_BYTES:
        raise BlockError(f"attribute size {size!r} out of range")
    if blob is None:
        if len(index) and int(index.max()) >= 0:
            raise BlockError("attribute index points into missing attributes")
        return index, []
    if not isinstance(blob, bytes):
        raise BlockError("attribute blob is not bytes")
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(blob, size + 1)  # never more than the size the writer stored
    except zlib.error as exc:
        raise BlockError(f"attributes do not decompress ({exc})") from None
    if len(text) != size or not inflate.eof:
        raise BlockError(f"attributes inflate to {len(text)}+ bytes, expected {size}")
    try:
        values = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BlockError(f"attributes are not JSON ({type(exc).__name__})") from None
    if not isinstance(values, list) or not all(
        isinstance(v, dict) and all(isinstance(k, str) for k in v) for v in values
    ):
        raise BlockError("attributes are not a list of objects")
    if len(index) and (int(index.min()) < -1 or int(index.max()) >= len(values)):
        raise BlockError("attribute index out of range")
    return index, values


def _links(blob: object, n: int, ids: np.ndarray) -> np.ndarray | None:
    if blob is None:
        return None
    if not isinstance(blob, bytes) or len(blob) % 16:
        raise BlockError("links column damaged")
    pairs = np.frombuffer(blob, dtype="<i8").reshape(-1, 2)
    if not len(pairs):
        return None
    rows, targets = pairs[:, 0], pairs[:, 1]
    if int(rows.min()) < 0 or int(rows.max()) >= n:
        raise BlockError("a link names a row outside the block")
    if int(targets.min()) < 1 or int(targets.max()) >= MAX_SEQ:
        raise BlockError("a link names an impossible span id")
    if (targets >= ids[rows]).any():
        # a span's cross-thread parent started before it: a link forward (or to
        # itself) would make a cycle in the call tree
        raise BlockError("a link names a span that started later (or itself)")
    return pairs


def decode(row: tuple, stored_crc: object, ctx: Context) -> Block:
    """Checks one ``blocks`` row (``BLOCK_COLUMNS`` order) and returns its columns.

    The CRC runs on a second thread while the columns are checked (zlib drops
    the GIL on large buffers): on a million-span block it costs nothing extra
    on two cores. The block is returned only once both agree.
    """
    crc = _CRC_POOL.submit(row_crc, *row)
    try:
        block = _decode(row, ctx)
    except BlockError:
        if crc.result() != stored_crc:  # damage explains the error better
            raise BlockError(_CRC_MISMATCH) from None
        raise
    if crc.result() != stored_crc:
        raise BlockError(_CRC_MISMATCH)
    return block


_CRC_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchscope-crc")
_CRC_MISMATCH = "checksum mismatch (the bytes on disk changed)"


def _decode(row: tuple, ctx: Context) -> Block:
    part, seq, n, id_base = row[0], row[1], row[2], row[3]
    if not all(isinstance(v, int) for v in (part, seq, n, id_base)):
        raise BlockError("header fields are not integers")
    if not 0 < n <= MAX_BLOCK_SPANS:
        raise BlockError(f"span count {n} out of range")
    if part not in ctx.threads_of_part:
        raise BlockError(f"part {part} has no process or thread rows")
    id_blob = row[4]
    wide = isinstance(id_blob, bytes) and len(id_blob) == 8 * n
    offsets = _column(id_blob, "<i8" if wide else "<u4", n, "ids")
    ids = np.add(offsets, id_base, dtype=np.int64)
    if int(ids.min()) < 1 or int(ids.max()) >= MAX_SEQ:
        raise BlockError("span ids out of range")
    local_threads = _column(row[5], THREAD_DTYPE, n, "threads")
    table = ctx.threads_of_part[part]
    if int(local_threads.max()) >= len(table):
        raise BlockError("a span names a thread the part never registered")
    threads = table[local_threads]
    if int(threads.min()) < 0:
        raise BlockError("a span names a thread the part never registered")
    starts = _column(row[6], TIME_DTYPE, n, "starts")
    durs = _column(row[7], TIME_DTYPE, n, "durations")
    if int(durs.min()) < 0:
        raise BlockError("negative duration")
    kinds = _column(row[8], STRING_DTYPE, n, "kinds")
    names = _column(row[9], STRING_DTYPE, n, "names")
    funcs = _column(row[10], STRING_DTYPE, n, "funcs")
    for col, what in ((kinds, "kind"), (names, "name"), (funcs, "func")):
        _check_codes(col, ctx, what)
    links = _links(row[11], n, ids)
    attr_index, attrs = _attributes(row, n)
    block = Block(part, seq, n, ids, threads, starts, durs, kinds, names, funcs, links,
                  attr_index, attrs)  # fmt: skip
    return block if ctx.show_internal else without_internal(block)


def without_internal(block: Block) -> Block:
    """The block without the spans marked ``internal`` (lockstep's hooks): leaves
    of torchscope's own machinery, which no view should show by default."""
    if block.attr_index is None or not block.attrs:
        return block
    slots = [i for i, v in enumerate(block.attrs) if v.get("internal") is True]
    if not slots:
        return block
    keep = ~np.isin(block.attr_index, slots)
    new_row = np.cumsum(keep) - 1
    links = block.links
    if links is not None:
        links = links[keep[links[:, 0]]].copy()
        links[:, 0] = new_row[links[:, 0]]
        links = links if len(links) else None
    return Block(
        block.part, block.seq, int(keep.sum()), block.ids[keep], block.threads[keep],
        block.starts[keep], block.durs[keep], block.kinds[keep], block.names[keep],
        block.funcs[keep], links, block.attr_index[keep], block.attrs,
    )  # fmt: skip
