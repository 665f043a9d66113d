"""Image classification data: decoding, validation, ImageFolder dirs and tar.gz archives,
a decoded-tensor cache, and augmentation on whole batches.

A dataset is an ImageFolder tree (``root/<class>/<image>``) given as a directory or as a
``.tar``/``.tar.gz``/``.tgz`` archive of one (a single top-level folder such as ``train/``
inside the archive is allowed). Images are decoded once, resized to the requested square
size, and kept as one uint8 tensor (N, 3, S, S); the result is cached as safetensors under
``$VT_EXPLORER_CACHE`` (default ``~/.cache/vt_explorer``) keyed by the source's checksum
and the size, so later runs do not decode JPEGs again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import tarfile
import warnings
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from .flags import UserError
from .images import (  # re-exported (``X as X``): vt_explorer.data was their home
    IMAGE_EXTENSIONS as IMAGE_EXTENSIONS,
)
from .images import IMAGE_FORMATS as IMAGE_FORMATS
from .images import MAX_ASPECT as MAX_ASPECT
from .images import MAX_IMAGE_FILE_BYTES as MAX_IMAGE_FILE_BYTES
from .images import check_viewable as check_viewable
from .images import decode_image as decode_image
from .images import image_files as image_files
from .images import read_image_file as read_image_file

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class DatasetError(UserError):
    """A dataset path could not be used; the message names the path and the reason."""


@dataclass
class ImageDataset:
    """Decoded images of one split.

    Attributes:
        images: (N, 3, S, S) uint8.
        labels: (N,) int64 class indices into ``classes``.
        classes: class names (sorted folder names).
        source: the path it was read from.
        skipped: ``"path: reason"`` for every file that was not a readable image.
        sha256: checksum of the source (archive bytes, or the directory listing).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)
    sha256: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_size(self) -> int:
        """S, the side of the decoded square images."""
        return int(self.images.shape[-1])

    def describe(self) -> dict:
        """JSON-ready summary for model cards."""
        return describe_split(self.source, self.sha256, self.labels, self.classes, self.skipped)


def fixed_sample(n: int, limit: int) -> torch.Tensor:
    """A fixed random sample (seed 0) of at most ``limit`` of ``n`` indices, in dataset
    order: the held-out sample of ``distill --holdout-limit`` and of ``eval --sample``."""
    if n <= limit:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def describe_split(
    source: str, sha256: str, labels: torch.Tensor, classes: list[str], skipped: list[str]
) -> dict:
    """A dataset split as model cards record it: source, checksum, sizes, skipped files."""
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    return {
        "source": source,
        "sha256": sha256,
        "n": int(labels.shape[0]),
        "classes": classes,
        "per_class": dict(zip(classes, counts, strict=True)),
        "skipped": len(skipped),
    }


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _iter_folder(root: Path) -> Iterator[tuple[str, str, bytes | None, str]]:
    """(class, relative name, bytes or None, skip reason) for each file under class folders."""
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(cls_dir.rglob("*")):
            if f.is_file():
                rel = str(f.relative_to(root))
                if f.name.startswith("."):
                    yield cls_dir.name, rel, None, "hidden file"
                elif f.stat().st_size > MAX_MEMBER_BYTES:
                    yield cls_dir.name, rel, None, _TOO_BIG
                else:
                    yield cls_dir.name, rel, f.read_bytes(), ""


_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


def verified_members(tar: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    """Every member of an open archive, read to its very end; DatasetError otherwise.

    Python's ``tarfile`` takes a damaged header after the first member for the end of the
    archive, so a flipped byte could silently drop every later member. Here the headers are
    read one by one and whatever follows the last member must be the zero blocks that end a
    tar; reading up to the end also checks a gzip stream's CRC and length. The error names
    the archive, the byte offset (in the uncompressed stream) and the last good member.
    """
    members: list[tarfile.TarInfo] = []
    last = "(none: the first header)"
    try:
        while (m := tar.next()) is not None:
            members.append(m)
            last = repr(m.name)
        f = tar.fileobj
        f.seek(tar.offset)
        pos = tar.offset
        while chunk := f.read(1 << 20):
            stripped = chunk.lstrip(b"\0")
            if stripped:
                at = pos + len(chunk) - len(stripped)
                raise DatasetError(
                    f"{path}: damaged archive: unreadable member header at byte {at} "
                    f"after member {last}; refusing to use part of it"
                )
            pos += len(chunk)
    except _ARCHIVE_ERRORS as err:
        raise DatasetError(
            f"{path}: damaged archive after member {last} ({type(err).__name__}: {err}); "
            "refusing to use part of it"
        ) from None
    return members


#: the largest file of a dataset read (an image file is at most 64 MB, as uploads): a 1 GiB
#: member of a small, highly compressed archive is named and skipped, never read whole
MAX_MEMBER_BYTES = MAX_IMAGE_FILE_BYTES
_TOO_BIG = f"more than an image file may be ({MAX_MEMBER_BYTES // 10**6} MB)"


def _member_kind(m: tarfile.TarInfo) -> str:
    """What an archive member that is not a regular file is, in words."""
    if m.issym():
        return "a symbolic link"
    if m.islnk():
        return "a hard link"
    if m.isdev():
        return "a device"
    return "not a regular file"


def _iter_archive(
    path: Path, classes: list[str] | None = None
) -> Iterator[tuple[str, str, bytes | None, str]]:
    """(class, member name, bytes or None, skip reason) for each member of an archive, the
    same rules as a folder's: links, devices and members over :data:`MAX_MEMBER_BYTES` are
    named and skipped, never silently dropped or read. ``classes``, when given, receives
    every class folder the archive holds (a class whose files are all unreadable is still
    one, so that it is refused as a folder's would be)."""
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 (closed by the with below)
    except _ARCHIVE_ERRORS as err:
        raise DatasetError(f"{path}: not a readable tar archive ({err})") from None
    with tar:
        every = [m for m in verified_members(tar, path) if not m.isdir()]
        members = [m for m in every if m.isfile()]
        parts = [Path(m.name).parts for m in every]
        if not members:
            raise DatasetError(f"{path}: the archive holds no files")
        # allow one common top-level folder (train/<class>/...), else <class>/...
        tops = {p[0] for p in parts}
        depth = 1 if len(tops) == 1 and all(len(p) >= 3 for p in parts) else 0
        if classes is not None:
            classes[:] = sorted({p[depth] for p in parts if len(p) >= depth + 2})
        for m, p in zip(every, parts, strict=True):
            if not m.isfile():
                cls = p[depth] if len(p) >= depth + 2 else ""
                yield cls, m.name, None, f"{_member_kind(m)}, not an image file"
        too_big = {m.name for m in members if m.size > MAX_MEMBER_BYTES}
        members = [m for m in members if m.name not in too_big]
        for m in sorted(too_big):
            p = Path(m).parts
            cls = p[depth] if len(p) >= depth + 2 else ""
            yield cls, m, None, _TOO_BIG
        parts = [Path(m.name).parts for m in members]
        ordered = sorted(zip(members, parts, strict=True), key=lambda mp: mp[0].name)
        # a compressed archive cannot seek back without decompressing again from its start,
        # so members read out of archive order cost O(n^2) (Caltech-101: 7 instead of 300
        # images/s): when the names are not already in archive order, read the files once
        # in archive order into memory (up to _ARCHIVE_BUFFER bytes), then hand them out
        # sorted
        buffered: dict[str, bytes] | None = None
        in_order = all(a.name <= b.name for a, b in itertools.pairwise(members))
        if not in_order and sum(m.size for m in members) <= _ARCHIVE_BUFFER:
            buffered = {m.name: _member_bytes(tar, m, path) for m in members}
        for m, p in ordered:
            if len(p) < depth + 2:
                yield "", m.name, None, "not inside a class folder"
                continue
            data = buffered.pop(m.name) if buffered is not None else _member_bytes(tar, m, path)
            hidden = Path(m.name).name.startswith(".")
            yield p[depth], m.name, (None if hidden else data), ("hidden file" if hidden else "")


#: bytes of archive members read into memory at most to read an unsorted archive in order
_ARCHIVE_BUFFER = 2 << 30


def _member_bytes(tar: tarfile.TarFile, m: tarfile.TarInfo, path: Path) -> bytes:
    """The bytes of one archive member; DatasetError naming it for a damaged archive."""
    try:
        f = tar.extractfile(m)
        return f.read() if f is not None else b""
    except _ARCHIVE_ERRORS as err:
        raise DatasetError(
            f"{path}: damaged archive at member {m.name!r} ({err}); refusing to use part of it"
        ) from None


def source_digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    else:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                st = f.stat()
                h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$VT_EXPLORER_CACHE`` or ``~/.cache/vt_explorer``."""
    env = os.environ.get("VT_EXPLORER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "vt_explorer"


def check_source(path: str | os.PathLike) -> Path:
    """The dataset path, expanded; DatasetError if it is missing or not a folder/archive."""
    src = Path(path).expanduser()
    if not src.exists():
        raise DatasetError(f"{src}: no such file or directory")
    if src.is_file() and not _is_archive(src):
        raise DatasetError(
            f"{src}: not a dataset (expected a folder of class folders or a .tar.gz of one)"
        )
    return src


def load_image_folder(
    path: str | os.PathLike,
    input_size: int = 32,
    resize: str = "stretch",
    use_cache: bool = True,
    progress: bool = True,
    workers: int = 2,
    interpolation: str = "bicubic",
) -> ImageDataset:
    """Read an ImageFolder directory or archive into an :class:`ImageDataset`.

    Every image is decoded with :func:`decode_image` and resized to ``input_size`` (the
    whole image, ``"stretch"``, or a centre crop, ``"center_crop"``; ``interpolation`` as in
    :class:`~vt_explorer.preprocess.Preprocess`). Files that are not
    readable images are skipped with a warning naming each (and counted in ``skipped``).
    ``workers`` threads decode in parallel (PIL releases the GIL while decoding).
    Raises :class:`DatasetError` for a missing path, a path with no class folders, an empty
    class folder, or a dataset without a single readable image.
    """
    src = check_source(path)
    digest = source_digest(src)
    how = resize if interpolation == "bicubic" else f"{resize}-{interpolation}"
    cache = cache_dir() / "datasets" / f"{digest[:24]}-{input_size}-{how}.safetensors"
    hit = read_cache(cache, "images") if use_cache else None
    if hit is not None:
        t, classes, skipped = hit
        warn_skipped(skipped)  # the same words as the first read, not silence
        return ImageDataset(t["images"], t["labels"], classes, str(src), skipped, digest)

    class_dirs, items = scan_source(src)
    arrays: list[np.ndarray] = []
    names: list[str] = []
    skipped: list[str] = []
    for chunk_names, chunk_arrays in decode_stream(
        src, items, input_size, resize, workers, progress, skipped, interpolation=interpolation
    ):
        names += chunk_names
        arrays += chunk_arrays
    classes, labels = finish_labels(src, class_dirs, names, skipped)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    ds = ImageDataset(images, labels, list(classes), str(src), skipped, digest)
    if use_cache:
        write_cache(cache, {"images": images, "labels": labels}, ds.classes, skipped)
    return ds


def read_cache(path: Path, key: str) -> tuple[dict[str, torch.Tensor], list[str], list[str]] | None:
    """A cache file written by :func:`write_cache`: (tensors, classes, skipped), or None
    when it is absent or damaged (a damaged file is deleted: rebuilt, never trusted)."""
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        if key not in tensors or "labels" not in tensors:
            raise ValueError("missing tensors")
        return tensors, json.loads(meta["classes"]), json.loads(meta["skipped"])
    except Exception:
        path.unlink(missing_ok=True)
        return None


def write_cache(
    path: Path, tensors: dict[str, torch.Tensor], classes: list[str], skipped: list[str]
) -> None:
    """Write tensors + class names + skipped files as safetensors, atomically; a failure
    only warns (the cache is an optimisation)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        meta = {"classes": json.dumps(classes), "skipped": json.dumps(skipped)}
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except OSError as err:
        warnings.warn(f"could not write the cache {path}: {err}", stacklevel=3)


def scan_source(src: Path) -> tuple[list[str] | None, Iterator[tuple[str, str, bytes | None, str]]]:
    """Class folders (None for an archive: known after reading) and the file iterator."""
    if src.is_dir():
        class_dirs = sorted(p.name for p in src.iterdir() if p.is_dir())
        if not class_dirs:
            raise DatasetError(f"{src}: no class folders (expected {src}/<class>/<image>)")
        return class_dirs, _iter_folder(src)
    classes: list[str] = []  # filled when the archive is read (its headers come first)
    return classes, _iter_archive(src, classes)


def decode_stream(
    src: Path,
    items: Iterator[tuple[str, str, bytes | None, str]],
    input_size: int,
    resize: str,
    workers: int,
    progress: bool,
    skipped: list[str],
    chunk: int = 1024,
    interpolation: str = "bicubic",
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """Decode and resize files in chunks: yields (class names, (S, S, 3) uint8 arrays).

    Unreadable files are appended to ``skipped`` as ``"path: reason"`` and warned about
    at the end. Lets a caller process a dataset too big to hold decoded (feature caches).
    """
    from .preprocess import Preprocess

    prep = Preprocess(input_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), resize, interpolation)

    def work(item: tuple[str, str, bytes | None, str]) -> tuple[str, np.ndarray | None, str]:
        cls, rel, data, reason = item
        if data is None:
            return cls, None, f"{rel}: {reason}"
        try:
            return cls, _to_uint8(prep, decode_image(data, rel)), ""
        except ValueError as err:
            return cls, None, str(err)

    first_skip = len(skipped)
    seen = done = 0
    bar = tqdm(desc=f"decoding {src.name}", unit="img", disable=not progress, leave=False)
    try:  # the bar is cleared even when a damaged archive stops the stream
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for part in _chunks(items, chunk):
                names, arrays = [], []
                seen += len(part)
                for cls, arr, reason in pool.map(work, part):
                    if arr is None:
                        skipped.append(reason)
                    else:
                        arrays.append(arr)
                        names.append(cls)
                done += len(names)
                bar.update(len(part))
                yield names, arrays
    finally:
        bar.close()
    if done + len(skipped) - first_skip != seen:  # every file is decoded or named as skipped
        raise DatasetError(
            f"{src}: {seen} files read but {done} decoded and {len(skipped) - first_skip} skipped"
        )
    warn_skipped(skipped[first_skip:], stacklevel=4)


def warn_skipped(skipped: list[str], stacklevel: int = 3) -> None:
    """One warning per file a dataset read skipped (``"path: reason"``), on the first read
    and on every read from the cache alike."""
    for s in skipped:
        warnings.warn(f"skipped {s}", stacklevel=stacklevel)


def finish_labels(
    src: Path, class_dirs: list[str] | None, names: list[str], skipped: list[str]
) -> tuple[list[str], torch.Tensor]:
    """Check every class has an image; return (classes, (N,) int64 labels)."""
    classes = class_dirs if class_dirs is not None else sorted(set(names))
    if not classes or not names:
        raise DatasetError(f"{src}: no readable image inside class folders")
    counts = {c: 0 for c in classes}
    for n in names:
        counts[n] += 1
    empty = [c for c, k in counts.items() if k == 0]
    if empty:
        raise DatasetError(f"{src}: class folder(s) without a readable image: {', '.join(empty)}")
    index = {c: i for i, c in enumerate(classes)}
    return list(classes), torch.tensor([index[n] for n in names], dtype=torch.int64)


def _chunks(items: Iterator, n: int) -> Iterator[list]:
    chunk: list = []
    for it in items:
        chunk.append(it)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _to_uint8(prep, img: Image.Image) -> np.ndarray:
    """Resize like ``prep`` and return an (S, S, 3) uint8 array."""
    if img.size == (prep.input_size, prep.input_size):
        return np.asarray(img, dtype=np.uint8)
    t = prep(img)  # (3, S, S) in [0, 1] with mean 0, std 1
    return (t.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)


def check_same_classes(train: ImageDataset, val: ImageDataset) -> None:
    """Raise DatasetError when two splits do not have the same class folders."""
    if train.classes != val.classes:
        only_t = sorted(set(train.classes) - set(val.classes))
        only_v = sorted(set(val.classes) - set(train.classes))
        raise DatasetError(
            f"class folders differ between {train.source} and {val.source}: "
            f"only in the first {only_t or '-'}, only in the second {only_v or '-'}"
        )


def normalize(images: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 (B, 3, S, S) -> normalised float32, channels_last."""
    m = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    x = (images.float() / 255.0 - m) / s
    return x.contiguous(memory_format=torch.channels_last)


def resize_batch(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (B, 3, s, s) -> uint8 (B, 3, size, size), bilinear with half-pixel centres, on
    the images' device. For enlarging this is PIL's bilinear filter (the same triangle
    weights, renormalised at the border) up to uint8 rounding; used by ``--decode-size``."""
    x = torch.nn.functional.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False
    )
    return x.round_().clamp_(0, 255).to(torch.uint8)


def check_decode_size(size: int, input_size: int, interpolation: str) -> None:
    """Raise ValueError when ``--decode-size`` cannot stand in for decoding at input size:
    it must be at most the input size (batches are only ever enlarged) and the config must
    resize bilinearly (torch's bicubic kernel is not PIL's, so train and eval images would
    differ). It applies to training on images and to computing cached trunk features."""
    if not 1 <= size <= input_size:
        raise UserError(f"--decode-size {size}: expected 1 to the input size {input_size}")
    if interpolation != "bilinear":
        raise UserError(
            f"--decode-size needs a config that resizes bilinearly (this one: {interpolation}; "
            "torch's bicubic kernel differs from PIL's)"
        )


def mirror_at_random(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each of the B maps or images of ``x`` (B, C, h, w) mirrored left-right with probability
    1/2: one ``torch.rand(B)`` draw from ``generator`` (on the CPU), whatever device ``x`` is on."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip, on a whole batch.

    images: (B, C, S, S) any dtype, on any device; ``generator`` lives on the CPU so runs
    are reproducible across devices. Returns a tensor of the same shape.
    """
    b, _, h, w = images.shape
    dev = images.device
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    cols = ox[:, None] + torch.arange(w, device=dev)[None, :]  # b w
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    rows = oy[:, None] + torch.arange(h, device=dev)[None, :]  # b h
    bidx = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # b h w c
    return out.permute(0, 3, 1, 2)
