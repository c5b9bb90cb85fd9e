"""Datasets for proxy training: decoded once into uint8 tensors, split, resized and augmented in bulk.

Every source ends up as one :class:`ImageSet`: a ``uint8 (N, 3, H, W)`` tensor and its labels.
Nothing is decoded per epoch and no per-image PIL transform runs in the training loop: resizing
is one call on the whole tensor (:func:`resize`) and augmentation works on whole batches
(:func:`augment_batch`).

Sources (:func:`load_dataset`):

* ``digits`` (the default): scikit-learn's 1,797 real 8x8 handwritten digits, shipped with
  scikit-learn, so it works offline on a fresh machine.
* ``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``: torchvision's readers on a local
  ``data_root`` (downloaded there only when ``download=True``).
* a directory in ImageFolder layout (one sub-folder per class), or a ``.tar.gz``/``.tgz``/``.tar``
  of one. Archives are read in memory and never extracted, so nothing is written into the
  project and no archive member name is ever used as a file system path. Sets of
  ``CACHE_MIN_IMAGES`` images or more are cached decoded on disk (see :func:`cache_dir`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import statistics
import tarfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from spaces import GhostNASError, write_atomic

__all__ = [
    "BUILTIN_DATASETS",
    "CACHE_MIN_IMAGES",
    "IMAGE_EXTENSIONS",
    "DataError",
    "ImageSet",
    "augment_batch",
    "cache_dir",
    "load_dataset",
    "proxy_split",
    "resize",
]

log = logging.getLogger(__name__)

# torchvision's ImageFolder extensions.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
BUILTIN_DATASETS = ("digits", "cifar10", "cifar100", "mnist", "fashion-mnist")
# Below this, decoding takes well under a second and a cache file would only be litter.
CACHE_MIN_IMAGES = 1000
# Images that do not all share one size are fitted to a square no larger than this by default,
# so a folder of camera photos cannot fill the memory; pass image_size to choose.
_DEFAULT_MAX_SIDE = 256
_MAX_DECODED_BYTES = 8 << 30
_CACHE_FORMAT = 1
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class DataError(GhostNASError):
    """Bad data input: the message is one line that names the path or value and the problem."""


@dataclass(frozen=True)
class ImageSet:
    """Decoded images with their labels.

    ``mirror_invariant`` says whether a horizontally mirrored image keeps its label. It is False
    for handwritten digits, where a mirrored 2, 3, 4, 5, 6, 7 or 9 is no digit at all, so the
    flip augmentation would teach the model images it never sees; True for photos (CIFAR, most
    folders) and Fashion-MNIST, whose mirrored garments are still the same garments.
    """

    images: torch.Tensor  # uint8 (N, 3, H, W)
    labels: torch.Tensor  # int64 (N,)
    classes: tuple[str, ...]
    name: str
    mirror_invariant: bool = True

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise DataError(f"{self.name}: images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
            raise DataError(f"{self.name}: labels must be int64 (N,) matching the images, got {labels.dtype} {tuple(labels.shape)}")
        if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < len(self.classes):
            raise DataError(f"{self.name}: labels must lie in 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.classes, self.name, self.mirror_invariant)

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.num_classes).tolist()


# -- loading ------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where decoded folders are cached: ``$GHOSTNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/ghostnas``."""
    if env := os.environ.get("GHOSTNAS_CACHE_DIR"):
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ghostnas"


def load_dataset(
    source: str = "digits",
    *,
    data_root: Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    cache: Path | None = None,
) -> ImageSet:
    """The training images of ``source``: a built-in name or a path (folder or archive).

    ``data_root`` is where torchvision datasets live (default: ``cache_dir()/datasets``).
    ``image_size`` fits every image of a folder or archive to that square size as it is decoded
    (shorter side resized, centre cropped); by default images keep their own size when they all
    share one, and otherwise are fitted to their median shorter side, at most 256.
    ``cache`` overrides :func:`cache_dir` for decoded folders.
    """
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"image_size must be a positive integer, got {image_size!r}")
    name = source.strip().lower().replace("_", "-")
    if name == "digits":
        return _load_digits()
    if name in BUILTIN_DATASETS:
        return _load_torchvision(name, data_root or cache_dir() / "datasets", download=download)
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(
            f"dataset {source!r} is neither a known name ({', '.join(BUILTIN_DATASETS)}) nor an existing path"
        )
    if path.is_dir():
        return _load_folder(path, image_size=image_size, cache=cache)
    if path.name.lower().endswith(_ARCHIVE_SUFFIXES):
        return _load_archive(path, image_size=image_size, cache=cache)
    raise DataError(f"{path} is a file but not an image folder archive (.tar.gz, .tgz or .tar)")


def _load_digits() -> ImageSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are counts 0..16 of a 4x4 block of the original 32x32 bitmap.
    grey = torch.from_numpy(np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8))
    images = grey[:, None].expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    classes = tuple(str(c) for c in digits.target_names)
    return ImageSet(images, labels, classes, "digits", mirror_invariant=False)


def _load_torchvision(name: str, root: Path, *, download: bool) -> ImageSet:
    import torchvision.datasets as tvd

    reader = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "mnist": tvd.MNIST, "fashion-mnist": tvd.FashionMNIST}[name]
    try:
        dataset = reader(str(root), train=True, download=download)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        hint = "" if download else " (pass --download to fetch it, or --data-root to point at it)"
        raise DataError(f"{name} not found or damaged under {root}{hint}") from None
    except OSError as exc:  # a failed download or an unreadable root
        raise DataError(f"cannot read or download {name} into {root}: {_one_line(exc)}") from None
    data = torch.as_tensor(np.asarray(dataset.data))
    # CIFAR arrays are (N, H, W, 3); MNIST-like ones are grey (N, H, W).
    images = data.permute(0, 3, 1, 2) if data.dim() == 4 else data[:, None].expand(-1, 3, -1, -1)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    return ImageSet(images.contiguous(), labels, tuple(dataset.classes), name, mirror_invariant=name != "mnist")


# An image to decode: its name for messages, and a callable opening its bytes.
_Entry = tuple[str, Callable[[], BinaryIO]]


def _load_folder(root: Path, *, image_size: int | None, cache: Path | None) -> ImageSet:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root).parts
        files.extend((*rel, f) for f in sorted(filenames) if not f.startswith("."))
    class_dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes, members = _index(files, where=str(root), class_dirs=class_dirs)
    entries = [(str(root.joinpath(*parts)), _opener(root.joinpath(*parts))) for parts, _ in members]
    labels = [label for _, label in members]

    # The key covers every file's name, size and time, so any change to the tree decodes again.
    signature = hashlib.sha256()
    for parts, _ in members:
        stat = root.joinpath(*parts).stat()
        signature.update(f"{'/'.join(parts)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    key = _cache_key("folder", root.resolve(), signature.hexdigest(), image_size)
    return _decode_cached(entries, labels, classes, name=root.name, key=key, image_size=image_size, cache=cache)


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


def _load_archive(path: Path, *, image_size: int | None, cache: Path | None) -> ImageSet:
    stat = path.stat()
    key = _cache_key("archive", path.resolve(), f"{stat.st_size}:{stat.st_mtime_ns}", image_size)
    name = path.name[: -len(next(s for s in _ARCHIVE_SUFFIXES if path.name.lower().endswith(s)))]
    cached = _read_cache(key, cache, name=name)
    if cached is not None:
        return cached
    blobs: dict[tuple[str, ...], bytes] = {}
    t = time.perf_counter()
    try:
        with tarfile.open(path, "r:" if path.name.lower().endswith(".tar") else "r:gz") as archive:
            links = 0
            for member in archive:
                parts = _member_parts(path, member)
                if member.issym() or member.islnk():
                    links += 1  # never followed: it could point anywhere
                elif member.isfile() and not any(p.startswith(".") for p in parts):
                    blobs[parts] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{path} is not a readable tar archive: {_one_line(exc)}") from None
    if links:
        log.warning("%s: skipped %d link member(s); an archive's images must be regular files", path, links)
    log.info("read %d files from %s in %.1f s", len(blobs), path, time.perf_counter() - t)
    classes, members = _index(list(blobs), where=str(path), class_dirs=None)
    entries = [(f"{path}:{'/'.join(parts)}", _bytes_opener(blobs[parts])) for parts, _ in members]
    labels = [label for _, label in members]
    return _decode_cached(entries, labels, classes, name=name, key=key, image_size=image_size, cache=cache)


def _member_parts(path: Path, member: tarfile.TarInfo) -> tuple[str, ...]:
    """A member's path parts; an absolute name or one that climbs out with ``..`` is bad input
    (its class would be a folder outside the image tree: ``/`` or ``data`` for ``data/../x``)."""
    name = member.name
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts or not parts:
        raise DataError(f"{path}: member {name!r} is absolute or climbs out of the archive with '..'; refusing the archive")
    return tuple(p for p in parts if p != ".")


def _bytes_opener(blob: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(blob)


def _one_line(exc: BaseException) -> str:
    """A library's message on one line (tarfile and torchvision write several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _index(
    files: Sequence[tuple[str, ...]], *, where: str, class_dirs: list[str] | None
) -> tuple[tuple[str, ...], list[tuple[tuple[str, ...], int]]]:
    """Classes and ``(path parts, label)`` per image of a tree given as path parts.

    ``class_dirs`` are a folder's sub-folders; for an archive (None) the class folders are the
    sub-folders of the deepest folder holding every image, so ``train/cat/1.jpg`` and
    ``cat/1.jpg`` read alike.
    """
    images = [parts for parts in files if _is_image(parts[-1])]
    if not images:
        raise DataError(f"{where} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if class_dirs is None:
        parents = {parts[:-1] for parts in images}
        root = os.path.commonprefix(sorted(parents))
        if len(parents) == 1:  # every image in one folder: that folder is the only class
            root = root[:-1]
        class_dirs = sorted({parts[len(root)] for parts in images if len(parts) > len(root) + 1})
    else:
        root = ()
    if len(class_dirs) < 2:
        found = f"only one class folder ({class_dirs[0]!r})" if class_dirs else "no class folders"
        raise DataError(f"{where}: found {found}; an image folder needs one sub-folder per class, at least 2")
    label_of = {name: i for i, name in enumerate(class_dirs)}
    members = []
    for parts in files:
        if parts[: len(root)] != root:
            continue  # outside the image tree of an archive, e.g. a top-level README
        rel = parts[len(root) :]
        if len(rel) == 1:
            if _is_image(rel[0]):
                raise DataError(f"{where}: image {'/'.join(parts)} lies outside the class folders")
            continue  # a README or label file beside the class folders
        if not _is_image(rel[-1]):
            raise DataError(f"{where}: {'/'.join(parts)} is not an image (expected {', '.join(IMAGE_EXTENSIONS)})")
        members.append((parts, label_of[rel[0]]))
    counts = np.bincount([label for _, label in members], minlength=len(class_dirs))
    if empty := [class_dirs[i] for i in np.flatnonzero(counts == 0)]:
        raise DataError(f"{where}: class folder {empty[0]!r} holds no images")
    _check_enough(where, class_dirs, counts.tolist())  # before any image is decoded
    return tuple(class_dirs), members


def _cache_key(kind: str, path: Path, signature: str, image_size: int | None) -> str:
    text = f"{_CACHE_FORMAT}\0{kind}\0{path}\0{signature}\0{image_size}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cache_path(key: str, cache: Path | None) -> Path:
    return (cache or cache_dir()) / "images" / f"{key}.pt"


def _read_cache(key: str, cache: Path | None, *, name: str) -> ImageSet | None:
    path = _cache_path(key, cache)
    if not path.exists():
        return None
    try:
        # Our own file, and still loaded tensor-only: a planted cache file cannot run code.
        blob = torch.load(path, weights_only=True)
        data = ImageSet(blob["images"], blob["labels"], tuple(blob["classes"]), name, bool(blob["mirror_invariant"]))
    except Exception as exc:  # a truncated or foreign file: decode again and overwrite it
        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
        return None
    log.info("loaded %d decoded images from cache %s", len(data), path)
    return data


def _write_cache(key: str, cache: Path | None, data: ImageSet) -> None:
    path = _cache_path(key, cache)
    blob = {"images": data.images, "labels": data.labels, "classes": list(data.classes), "mirror_invariant": data.mirror_invariant}
    try:  # atomic: concurrent workers never read a half-written file
        write_atomic(path, lambda stream: torch.save(blob, stream))
    except GhostNASError as exc:  # a read-only cache only costs the next run a decode
        log.warning("cannot write cache file %s: %s", path, exc)
        return
    log.info("cached %d decoded images in %s", len(data), path)


def _decode_cached(
    entries: list[_Entry],
    labels: list[int],
    classes: tuple[str, ...],
    *,
    name: str,
    key: str,
    image_size: int | None,
    cache: Path | None,
) -> ImageSet:
    use_cache = len(entries) >= CACHE_MIN_IMAGES
    if use_cache and (cached := _read_cache(key, cache, name=name)) is not None:
        return cached
    t = time.perf_counter()
    images = _decode_all(entries, image_size=image_size)
    log.info("decoded %d images of %s in %.1f s", len(entries), name, time.perf_counter() - t)
    data = ImageSet(images, torch.tensor(labels, dtype=torch.int64), classes, name)
    if use_cache:
        _write_cache(key, cache, data)
    return data


def _decode_all(entries: list[_Entry], *, image_size: int | None) -> torch.Tensor:
    """Decode serially: on small images the work is Python-bound, so on this 2-core machine
    neither threads (GIL) nor processes (pickling) beat a plain loop; see docs/BENCHMARKS.md."""
    sizes = [_image_size(where, opener) for where, opener in entries]  # headers only: cheap
    target: tuple[int, int] | None
    if image_size is not None:
        target = (image_size, image_size)
    elif len(set(sizes)) == 1:
        target = None  # keep the common native size: nothing to resample
    else:
        side = min(_DEFAULT_MAX_SIDE, int(statistics.median(min(w, h) for w, h in sizes)))
        log.info("images differ in size; fitting them to %dx%d (pass image_size to choose)", side, side)
        target = (side, side)
    height, width = (target[1], target[0]) if target else (sizes[0][1], sizes[0][0])
    need = len(entries) * 3 * height * width
    if need > _MAX_DECODED_BYTES:
        raise DataError(
            f"{len(entries)} images of {width}x{height} need {need / 2**30:.1f} GiB decoded; pass a smaller image size"
        )
    out = torch.empty(len(entries), height, width, 3, dtype=torch.uint8)
    array = out.numpy()
    for i, (where, opener) in enumerate(entries):
        array[i] = _decode(where, opener, target)
    return out.permute(0, 3, 1, 2).contiguous()


def _image_size(where: str, opener: Callable[[], BinaryIO]) -> tuple[int, int]:
    try:
        with opener() as fp, Image.open(fp) as image:
            return image.size
    except UnidentifiedImageError:  # its message is the repr of our file object: say it plainly
        raise DataError(f"cannot read image {where}: not in a format PIL can identify") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {where}: {_one_line(exc)}") from None


def _decode(where: str, opener: Callable[[], BinaryIO], target: tuple[int, int] | None) -> np.ndarray:
    try:
        with opener() as fp, Image.open(fp) as image:
            if target is not None:
                image.draft("RGB", target)  # JPEG: decode at a reduced scale still >= target
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {where}: {_one_line(exc)}") from None
    if target is not None and rgb.size != target:
        rgb = _fit(rgb, target[0])
    return np.asarray(rgb)


def _fit(image: Image.Image, side: int) -> Image.Image:
    """Shorter side to ``side`` (antialiased), then the centred square."""
    w, h = image.size
    scale = side / min(w, h)
    w, h = max(side, round(w * scale)), max(side, round(h * scale))
    image = image.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side))


# -- resizing, splitting, augmenting ----------------------------------------------------------


def resize(images: torch.Tensor, size: int, *, chunk: int = 2048) -> torch.Tensor:
    """uint8 ``(N, 3, H, W)`` to ``(N, 3, size, size)``: shorter side to ``size``, centre crop.

    Bilinear with antialiasing, done once on the whole set (in chunks, to bound the float
    copy), never per image per epoch. Returns ``images`` itself when nothing changes.
    """
    height, width = images.shape[-2:]
    if height == width == size:
        return images
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = torch.empty(images.shape[0], images.shape[1], size, size, dtype=torch.uint8, device=images.device)
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        part = F.interpolate(part, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = part[..., top : top + size, left : left + size].round_().clamp_(0, 255).to(torch.uint8)
    return out


def proxy_split(
    data: ImageSet, *, seed: int, val_fraction: float = 0.2, subset: int | None = None
) -> tuple[ImageSet, ImageSet]:
    """Deterministic, class-stratified (proxy-train, proxy-validation) split of ``data``.

    ``subset`` first keeps that many images in all (stratified too); then ``val_fraction`` of
    them go to validation. Same data and seed, same split: every trial of a study sees the same
    images, and no validation image is ever in the training part.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction!r}")
    counts = torch.tensor(data.class_counts())
    _check_enough(data.name, data.classes, counts.tolist())
    total = len(data) if subset is None else subset
    if isinstance(total, bool) or not isinstance(total, int) or not 2 * data.num_classes <= total <= len(data):
        raise DataError(
            f"subset must be an integer from {2 * data.num_classes} (2 per class) to {len(data)} "
            f"(the size of {data.name}), got {subset!r}"
        )
    kept = _apportion(counts, total)
    # At least one image of every kept class on each side, whatever the rounding.
    n_val = torch.minimum(_apportion(kept, round(total * val_fraction)).clamp(min=1), kept - 1).clamp(min=0)
    generator = torch.Generator().manual_seed(seed)
    train_idx, val_idx = [], []
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[: int(kept[c])]]
        val_idx.append(chosen[: int(n_val[c])])
        train_idx.append(chosen[int(n_val[c]) :])
    train = data.subset(torch.cat(train_idx).sort().values)
    val = data.subset(torch.cat(val_idx).sort().values)
    return train, val


def _check_enough(name: str, classes: Sequence[str], counts: Sequence[int]) -> None:
    """Every class needs an image to train on and one to validate on."""
    if min(counts) < 2:
        small = min(range(len(counts)), key=lambda i: counts[i])
        raise DataError(
            f"data set {name} is too small: class {classes[small]!r} has {counts[small]} image(s); "
            f"a search needs at least 2 images per class (one to train on, one to validate), more to learn anything"
        )


def _apportion(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` in proportion to ``counts`` by largest remainders: exact sum, fair shares."""
    quota = counts.double() * total / counts.sum()
    share = quota.floor().long()
    remainder = quota - share
    # Ties go to the lower class index: stable sort on the negated remainder.
    order = torch.sort(-remainder, stable=True).indices
    share[order[: total - int(share.sum())]] += 1
    return share


def augment_batch(
    images: torch.Tensor, *, generator: torch.Generator, padding: int, flip: bool
) -> torch.Tensor:
    """Random crop with zero padding and, if ``flip``, random horizontal flips, on a uint8 batch.

    One gather for the whole batch. ``generator`` is a CPU generator (random numbers are drawn
    there and moved, so that results do not depend on the device).
    """
    batch, channels, height, width = images.shape
    device = images.device
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator).to(device)
        dx = torch.randint(0, 2 * padding + 1, (batch, 1), generator=generator).to(device)
        rows = (dy + torch.arange(height, device=device))[:, None, :, None]
        cols = (dx + torch.arange(width, device=device))[:, None, None, :]
        images = padded[
            torch.arange(batch, device=device)[:, None, None, None],
            torch.arange(channels, device=device)[None, :, None, None],
            rows,
            cols,
        ]
    if flip:
        mirror = (torch.rand(batch, generator=generator) < 0.5).to(device)
        images = torch.where(mirror[:, None, None, None], images.flip(3), images)
    return images

