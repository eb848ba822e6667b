"""The run directory: what each batch step writes, and how it is read back.

One run per partition date lives in ``<data_dir>/runs/date=YYYY-MM-DD/``::

    users.parquet       user_id                                    row i  = user index i
    items.parquet       item_id, category, title, available        row j  = item index j
    model.npz           user_factors float32 (n_users, f), item_factors float32 (n_items, f)
    candidates.npz      items int32 (n_users, n_candidates), -1 padded; scores float32, same shape
    seen.npz            indptr int64 (n_users + 1,), items int32: each user's seen set (see batch.seen)
    neighbours.npz      items int32 (n_items, n_neighbours), -1 padded; scores float32, same shape
    covisit.npz         items int32 (n_items, n_covisit), -1 padded; scores float32, same shape, -inf
                        padded: co-visitation neighbours (see batch.covisit)
    popularity.npz      scores float32 (n_items,)  recency-decayed popularity
    popular.npz         the popular lists the version publishes (``candidates.popular_lists``, of
                        ``params.popular_n`` items each): categories <U (n_lists,) (``keys.ALL_CATEGORIES``
                        for the global list, then each catalogue category), indptr int64 (n_lists + 1,),
                        items int32 (indptr[-1],); list c = items[indptr[c]:indptr[c + 1]], best first
    eval_model.npz      user_factors, item_factors float32 of the model trained WITHOUT the holdout
                        (what metrics.json measured; used by the quality gate; not published).
                        model.npz is this model continued on the full data (batch.train.continue_als)
    eval_holdout.npz    the holdout metrics.json was measured on, and which of its items fall on the
                        partition day (the gate's fair targets): see batch.quality.GateInputs
    eval_train.npz      the train matrix (CSR) and train popularity of that measurement; with the two
                        above, the quality gate needs nothing else of the run's day (not published)
    serving.json        {"blend": tuned blend weights or null}: how the API ranks this version
                        (hashed, so a new blend is a new version that the API reloads)
    metrics.json        holdout metrics (see batch.holdout_metrics)
    manifest.json       params, counts, data window, timings, files, content_hash   <- written last

Which arrays of these files are published, under which names and encodings, is declared once in
``feature_store.layout``; :class:`RunArtifacts` loads and checks a run from those tables.

A run is built in a temporary sibling directory and renamed into place, so a directory named
``date=...`` is always complete and a crashed run leaves only a ``.tmp-*`` directory behind, which the
next attempt removes. Arrays are ``.npz`` loaded with ``allow_pickle=False``; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import struct
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from feature_store.layout import INDEX_ARRAYS, ITEM_ARRAY, ITEM_ARRAYS, USER_ARRAY, USER_ARRAYS, Ragged
from shared.errors import ArtifactNotFound, ModelError
from shared.schemas import DATE_FORMAT

POPULAR_FILE = "popular.npz"
# sha256 over these, in this order, is a run's content hash and so its version id: the catalogue, the
# users, every published array's file (feature_store.layout, in table order), the popular lists and the
# serving params: everything a version publishes, so that a change in any of it is a new version.
HASHED_FILES: tuple[str, ...] = (
    "users.parquet",
    "items.parquet",
    *dict.fromkeys(a.artifact[0] for a in (*USER_ARRAYS, *ITEM_ARRAYS)),
    POPULAR_FILE,
    "serving.json",
)


def run_dir_for(runs_dir: Path, partition: dt.date) -> Path:
    return runs_dir / f"date={partition.strftime(DATE_FORMAT)}"


def staging_dir_for(runs_dir: Path, partition: dt.date) -> Path:
    """Where a sharded run is assembled (``batch.shards``) before ``seal_run`` renames it to ``run_dir_for``:
    a dot name, so nothing that looks for ``date=...`` runs ever takes it for a run."""
    return runs_dir / f".sharded-date={partition.strftime(DATE_FORMAT)}"


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success replace ``final`` with it, on error delete it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, final)


def replace_dir(src: Path, final: Path) -> None:
    """Rename the complete directory ``src`` to ``final``, replacing what was there (renames only)."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(src, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _strict(value: object) -> object:
    """NaN and infinities become null: JSON has no literal for them and strict parsers reject ``NaN``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    """Strict JSON (undefined metrics as null), written atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_strict(payload), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    if not path.exists():
        raise ArtifactNotFound(f"{path} does not exist; run the step that produces it first")
    return json.loads(path.read_text())


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays uncompressed (fast, and byte-identical for identical input)."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path: Path, mmap: bool = False) -> dict[str, np.ndarray]:
    """The arrays of ``path``. ``mmap``: read-only memory maps of its members instead of copies (our
    npz files are uncompressed), so a step that needs a few rows of a large array (one shard of users)
    reads only those pages."""
    if not path.exists():
        raise ArtifactNotFound(f"{path} does not exist; run the step that produces it first")
    if mmap:
        return _mmap_npz(path)
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # a zip member's local file header (30 bytes)


def _mmap_npz(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            if info.compress_type != zipfile.ZIP_STORED:  # compressed (not ours): no pages to map
                out[name] = load_npz(path)[name]
                continue
            fh.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
            fh.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            if dtype.hasobject:
                raise ModelError(f"{path}:{name} holds Python objects; artifacts never do (no pickle)")
            if math.prod(shape) == 0:
                out[name] = np.empty(shape, dtype=dtype)
            else:
                order = "F" if fortran else "C"
                out[name] = np.memmap(path, dtype=dtype, mode="r", offset=fh.tell(), shape=shape, order=order)
    return out


def save_npz_concat(path: Path, **parts: list[np.ndarray]) -> None:
    """Write ``path`` as ``save_npz(path, name=np.concatenate(parts[name]))`` would, byte for byte, without
    ever holding a whole array: each part (rows of the array, in order) is streamed into the member.

    The same zip calls as ``np.savez`` (stored members, zip64, the fixed default timestamp) and the same
    npy header, so a sharded run's merged files are identical to the unsharded run's.
    """
    tmp = path.with_suffix(".tmp.npz")
    with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arrays in parts.items():
            first = arrays[0]
            if any(a.dtype != first.dtype or a.shape[1:] != first.shape[1:] for a in arrays):
                raise ModelError(f"the parts of {path.name}:{name} differ in dtype or row shape")
            shape = (sum(a.shape[0] for a in arrays), *first.shape[1:])
            header = {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False, "shape": shape}
            with zf.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for a in arrays:
                    rows = max(1, (16 << 20) // max(1, a[:1].nbytes))  # ~16 MiB at a time
                    for start in range(0, a.shape[0], rows):
                        member.write(np.ascontiguousarray(a[start : start + rows]).tobytes())
    os.replace(tmp, path)


def save_popular(path: Path, lists: Mapping[str, np.ndarray]) -> None:
    """Save popular lists (name -> int32 item indices, in that order) as popular.npz (module docstring)."""
    sizes = [len(idx) for idx in lists.values()]
    indptr = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=indptr[1:])
    items = np.concatenate([np.asarray(idx, dtype=np.int32) for idx in lists.values()] or [np.empty(0, np.int32)])
    save_npz(path, categories=np.array(list(lists), dtype=str), indptr=indptr, items=items)


def load_popular(path: Path) -> dict[str, np.ndarray]:
    """popular.npz as {name: int32 item indices, best first}, in the saved order."""
    data = load_npz(path)
    rows = Ragged(data["indptr"], data["items"])
    return {str(name): rows[i] for i, name in enumerate(data["categories"].tolist())}


def content_hash(run_dir: Path) -> str:
    """sha256 over the published artifacts, in a fixed order: the basis of the version id."""
    h = hashlib.sha256()
    for name in HASHED_FILES:
        with open(run_dir / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


UserRows = np.ndarray | Ragged  # (n_users, w) rows, or ragged rows


@dataclass(frozen=True)
class RunArtifacts:
    """Everything publish needs, loaded by the tables of ``feature_store.layout`` and checked.

    ``user_arrays[name]``: (n_users, w) for dense and padded arrays, ``Ragged`` rows for ragged ones;
    ``item_arrays[name]``: (n_items,) or (n_items, w). Arrays a run predates (``required=False``) load empty;
    ``popular`` is None for a run from before popular lists were saved (publishing such a run needs a rebuild).
    """

    run_dir: Path
    user_ids: np.ndarray  # object/str (n_users,)
    items: pd.DataFrame  # item_id, category, title, available; row j = item j
    user_arrays: dict[str, UserRows]
    item_arrays: dict[str, np.ndarray]
    metrics: dict
    manifest: dict
    popular: dict[str, np.ndarray] | None  # name -> int32 item indices; None: the run predates popular.npz

    @classmethod
    def load(cls, run_dir: Path, mmap: bool = False) -> RunArtifacts:
        """Load and validate the run in ``run_dir``; ``mmap`` maps the arrays instead of reading them (a
        publish shard then reads only its users' rows; validation still reads every page once)."""
        if not (run_dir / "manifest.json").exists():
            date = run_dir.name.removeprefix("date=")
            raise ArtifactNotFound(f"no complete run in {run_dir}: run `hybridrec run-batch --date {date}` first")
        manifest = read_json(run_dir / "manifest.json")
        user_ids = pd.read_parquet(run_dir / "users.parquet")["user_id"].to_numpy(dtype=object)
        items = pd.read_parquet(run_dir / "items.parquet")
        listed = set(manifest.get("files", ()))  # what the run wrote; runs older than the list lack it
        files: dict[str, dict[str, np.ndarray] | None] = {}

        def npz(name: str, required: bool) -> dict[str, np.ndarray] | None:
            """A file the run lists (or a required one) must exist; an optional one the run predates may not."""
            if name not in files:
                path = run_dir / name
                files[name] = load_npz(path, mmap) if required or name in listed or path.exists() else None
            return files[name]

        user_arrays: dict[str, UserRows] = {}
        for spec in USER_ARRAYS:
            data = npz(spec.artifact[0], spec.required)
            if data is None:
                user_arrays[spec.name] = Ragged.empty(len(user_ids), spec.memory)
            elif spec.kind == "ragged":
                user_arrays[spec.name] = Ragged(data["indptr"], data[spec.artifact[1]])
            else:
                user_arrays[spec.name] = data[spec.artifact[1]]
        item_arrays = {}
        for spec in ITEM_ARRAYS:
            data = npz(spec.artifact[0], spec.required)
            empty = np.empty((len(items), 0) if spec.width else (len(items),), dtype=spec.memory)
            item_arrays[spec.name] = empty if data is None else data[spec.artifact[1]]
        popular_path = run_dir / POPULAR_FILE
        arts = cls(
            run_dir=run_dir,
            user_ids=user_ids,
            items=items,
            user_arrays=user_arrays,
            item_arrays=item_arrays,
            metrics=read_json(run_dir / "metrics.json"),
            manifest=manifest,
            popular=load_popular(popular_path) if POPULAR_FILE in listed or popular_path.exists() else None,
        )
        arts.validate()
        return arts

    def validate(self) -> None:
        """Rows match users / items, arrays sharing a width agree, index arrays stay in range, factors finite."""
        n_users, n_items = len(self.user_ids), len(self.items)
        problems = []
        widths: dict[str, tuple[str, int]] = {}
        for spec in ITEM_ARRAYS:
            arr = self.item_arrays[spec.name]
            if arr.shape[0] != n_items:
                problems.append(f"{spec.name} rows {arr.shape[0]} != items {n_items}")
            if spec.width is not None:
                first = widths.setdefault(spec.width, (spec.name, arr.shape[1] if arr.ndim == 2 else -1))
                if arr.ndim != 2 or arr.shape[1] != first[1]:
                    problems.append(f"{spec.name} and {first[0]} differ in shape")
        for spec in USER_ARRAYS:
            rows = self.user_arrays[spec.name]
            if len(rows) != n_users:
                problems.append(f"{spec.name} rows {len(rows)} != users {n_users}")
        vector = self.user_arrays["vector"]
        if isinstance(vector, np.ndarray) and vector.shape[1:] != self.item_arrays["item_factors"].shape[1:]:
            problems.append("user and item factor widths differ")
        for name, idx in (self.popular or {}).items():
            if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n_items):
                problems.append(f"popular list {name!r} index out of range")
        for name, arr in self._values():
            if name in INDEX_ARRAYS and int(arr.max(initial=-1)) >= n_items:
                problems.append(f"{name} index out of range")
            if (ITEM_ARRAY.get(name) or USER_ARRAY[name]).finite and not bool(np.isfinite(arr).all()):
                problems.append(f"{name} contain NaN/inf")
        if problems:
            raise ModelError(f"run {self.run_dir} is inconsistent: " + "; ".join(problems))

    def _values(self) -> list[tuple[str, np.ndarray]]:
        users = [(n, r.values if isinstance(r, Ragged) else r) for n, r in self.user_arrays.items()]
        return users + list(self.item_arrays.items())
