"""Datasets: the embedded digits, image folders and archives made of real PNG/JPEG files, the
stratified split, resizing and batch augmentation. Nothing here needs the network or ../shared."""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluators import data as data_module
from evaluators.data import DataError, ImageSet, augment_batch, load_dataset, proxy_split, resize


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    return load_dataset("digits")


def _indexed(base: ImageSet) -> ImageSet:
    """``base``'s labels, with image i carrying i in its first two pixels, to trace the split."""
    n = len(base)
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 0, 0, 1] = torch.arange(n) // 256
    return ImageSet(images, base.labels, base.classes, "indexed")


def _ids(part: ImageSet) -> list[int]:
    return (part.images[:, 0, 0, 0].long() + 256 * part.images[:, 0, 0, 1].long()).tolist()


def _write_images(root: Path, counts: dict[str, int], *, size: tuple[int, int] = (12, 10), fmt: str = "PNG") -> dict[str, list[np.ndarray]]:
    """Real image files, one folder per class; returns the pixels written, per class."""
    rng = np.random.default_rng(0)
    written: dict[str, list[np.ndarray]] = {}
    for cls, count in counts.items():
        (root / cls).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{i:03d}.{fmt.lower()}", fmt)
            written.setdefault(cls, []).append(pixels)
    return written


# -- built-in sources ---------------------------------------------------------------------------


def test_digits_is_the_embedded_default(digits: ImageSet) -> None:
    assert len(digits) == 1797
    assert digits.classes == tuple(str(d) for d in range(10))
    assert digits.images.dtype == torch.uint8 and digits.images.shape == (1797, 3, 8, 8)
    assert torch.equal(digits.images[:, 0], digits.images[:, 2])  # grey, replicated
    assert int(digits.images.max()) == 255 and int(digits.images.min()) == 0
    assert digits.class_counts() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert not digits.mirror_invariant  # a mirrored digit is no digit
    assert load_dataset().name == "digits"


def test_torchvision_dataset_without_files_names_the_root_and_the_flag(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar10 not found or damaged under .*--download"):
        load_dataset("cifar10", data_root=tmp_path)


def test_unknown_name_is_a_data_error() -> None:
    with pytest.raises(DataError, match="neither a known name .*digits.* nor an existing path"):
        load_dataset("imagenet-42")


# -- folders and archives -----------------------------------------------------------------------


def test_image_folder_loads_classes_counts_and_exact_pixels(tmp_path: Path) -> None:
    written = _write_images(tmp_path / "set", {"cat": 3, "dog": 5, "emu": 2})
    (tmp_path / "set" / "README.txt").write_text("beside the class folders: ignored")
    (tmp_path / "set" / "dog" / ".DS_Store").write_bytes(b"\0hidden")
    loaded = load_dataset(str(tmp_path / "set"))
    assert loaded.classes == ("cat", "dog", "emu")
    assert loaded.class_counts() == [3, 5, 2]
    assert loaded.images.shape == (10, 3, 10, 12)  # PIL size is (w, h) = (12, 10)
    assert loaded.name == "set" and loaded.mirror_invariant
    # PNG is lossless: file order within a class is sorted, so pixels match exactly.
    assert np.array_equal(loaded.images[3].permute(1, 2, 0).numpy(), written["dog"][0])


def test_jpeg_archive_with_a_top_folder_reads_like_the_folder(tmp_path: Path) -> None:
    _write_images(tmp_path / "train", {"a": 4, "b": 3}, size=(16, 16), fmt="JPEG")
    archive = tmp_path / "set.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "train", arcname="train")
    from_folder = load_dataset(str(tmp_path / "train"))
    from_archive = load_dataset(str(archive))
    assert from_archive.classes == ("a", "b") and from_archive.class_counts() == [4, 3]
    assert from_archive.name == "set"
    assert torch.equal(from_archive.images, from_folder.images)
    assert torch.equal(from_archive.labels, from_folder.labels)


def _tar_with(archive: Path, tmp_path: Path, extra) -> Path:
    """A real archive of a 2-class folder, plus the members ``extra(tar, png)`` adds."""
    _write_images(tmp_path / "src", {"a": 3, "b": 3})
    png = (tmp_path / "src" / "a" / "000.png").read_bytes()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src", arcname="data")
        extra(tar, png)
    return archive


def _member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


@pytest.mark.parametrize("name", ["/abs/path/x.png", "data/../../evil.png", "data/a/../../../x.png"])
def test_an_archive_member_outside_the_tree_refuses_the_archive(tmp_path: Path, name: str) -> None:
    archive = _tar_with(tmp_path / "bad.tar.gz", tmp_path, lambda tar, png: _member(tar, name, png))
    with pytest.raises(DataError) as info:
        load_dataset(str(archive))
    assert str(info.value) == f"{archive}: member {name!r} is absolute or climbs out of the archive with '..'; refusing the archive"


def test_archive_links_are_skipped_and_counted(tmp_path: Path, caplog) -> None:
    def links(tar, png):
        _member(tar, "data/a/sym.png", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        _member(tar, "data/b/hard.png", type=tarfile.LNKTYPE, linkname="data/a/000.png")

    archive = _tar_with(tmp_path / "links.tar.gz", tmp_path, links)
    with caplog.at_level(logging.WARNING, logger="evaluators.data"):
        data = load_dataset(str(archive))
    assert data.classes == ("a", "b") and data.class_counts() == [3, 3]  # the links are not images of it
    assert "skipped 2 link member(s)" in caplog.text


def test_a_data_set_too_small_to_split_says_so(tmp_path: Path) -> None:
    _write_images(tmp_path / "one", {"cat": 1, "dog": 1})
    with pytest.raises(DataError) as info:  # found before any image is decoded
        load_dataset(str(tmp_path / "one"))
    assert str(info.value) == (
        f"data set {tmp_path / 'one'} is too small: class 'cat' has 1 image(s); a search needs at least 2 images per class "
        "(one to train on, one to validate), more to learn anything"
    )


def test_mixed_sizes_are_fitted_to_a_square(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _write_images(root / "x", {"big": 2}, size=(40, 30))
    _write_images(root / "y", {"small": 2}, size=(20, 24))
    for folder in ("x", "y"):  # flatten: x/big/*.png -> x/*.png
        for file in (root / folder).glob("*/*.png"):
            file.rename(root / folder / file.name)
    assert load_dataset(str(root)).image_size == (25, 25)  # median of the shorter sides 30, 30, 20, 20
    assert load_dataset(str(root), image_size=8).image_size == (8, 8)


def test_big_folders_are_cached_and_a_changed_tree_is_decoded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(data_module, "CACHE_MIN_IMAGES", 4)  # the real cache, at a test's size
    root, cache = tmp_path / "set", tmp_path / "cache"
    _write_images(root, {"a": 2, "b": 2})
    first = load_dataset(str(root), cache=cache)
    (entry,) = (cache / "images").glob("*.pt")
    with caplog.at_level(logging.INFO, logger="evaluators.data"):
        second = load_dataset(str(root), cache=cache)
    assert "from cache" in caplog.text
    assert torch.equal(first.images, second.images) and second.classes == ("a", "b")

    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "b" / "000.png")
    changed = load_dataset(str(root), cache=cache)
    assert int(changed.images[2].max()) == 0
    assert len(list((cache / "images").glob("*.pt"))) == 2

    entry.write_bytes(b"not a torch file")  # a damaged cache entry is ignored, never fatal
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / "b" / "000.png")
    assert load_dataset(str(root), cache=cache).image_size == (10, 12)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "neither a known name .* nor an existing path"),
        ("empty", "contains no images"),
        ("one class", r"only one class folder \('cat'\)"),
        ("loose images", "no class folders"),
        ("text file in a class", r"cat/notes\.txt is not an image"),
        ("text named png", r"cannot read image .*bad\.png"),
        ("truncated png", r"cannot decode image .*cut\.png.*truncated"),
        ("truncated jpeg", r"cannot decode image .*cut\.jpg"),
        ("empty class folder", r"class folder 'emu' holds no images"),
        ("plain file", r"is a file but not an image folder archive"),
        ("broken archive", r"not a readable tar archive"),
    ],
)
def test_bad_data_paths_raise_one_clear_line(tmp_path: Path, layout: str, message: str) -> None:
    root = tmp_path / "set"
    if layout != "missing":
        root.mkdir()
    if layout in ("one class", "text file in a class", "text named png", "truncated png", "truncated jpeg", "empty class folder"):
        _write_images(root, {"cat": 2} if layout == "one class" else {"cat": 2, "dog": 2})
    if layout == "loose images":
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "0.png")
    if layout == "text file in a class":
        (root / "cat" / "notes.txt").write_text("not a picture")
    if layout == "text named png":
        (root / "dog" / "bad.png").write_text("not a picture either")
    if layout == "truncated png":
        good = (root / "dog" / "000.png").read_bytes()
        (root / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    if layout == "truncated jpeg":
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(root / "dog" / "full.jpg")
        good = (root / "dog" / "full.jpg").read_bytes()
        (root / "dog" / "cut.jpg").write_bytes(good[: len(good) // 2])
        (root / "dog" / "full.jpg").unlink()
    if layout == "empty class folder":
        (root / "emu").mkdir()
    if layout in ("plain file", "broken archive"):
        root = tmp_path / ("data.csv" if layout == "plain file" else "data.tar.gz")
        root.write_bytes(b"1,2,3\n")
    with pytest.raises(DataError, match=message) as info:
        load_dataset(str(root))
    assert "\n" not in str(info.value)
    assert str(root) in str(info.value)


# -- split --------------------------------------------------------------------------------------


def test_split_is_stratified_disjoint_and_deterministic(digits: ImageSet) -> None:
    indexed = _indexed(digits)
    train, val = proxy_split(indexed, seed=7)
    assert len(train) + len(val) == 1797 and len(val) == round(1797 * 0.2)
    assert not set(_ids(train)) & set(_ids(val))
    assert sorted(_ids(train) + _ids(val)) == list(range(1797))
    for c, total in enumerate(digits.class_counts()):
        assert abs(val.class_counts()[c] - total * 0.2) <= 1
    again_train, again_val = proxy_split(indexed, seed=7)
    assert _ids(again_train) == _ids(train) and _ids(again_val) == _ids(val)
    other_train, _ = proxy_split(indexed, seed=8)
    assert _ids(other_train) != _ids(train)


def test_subset_size_is_exact_stratified_and_fixed_per_seed(digits: ImageSet) -> None:
    indexed = _indexed(digits)
    train, val = proxy_split(indexed, seed=3, subset=500, val_fraction=0.3)
    assert len(train) + len(val) == 500 and len(val) == 150
    assert not set(_ids(train)) & set(_ids(val))
    assert all(45 <= n + m <= 55 for n, m in zip(train.class_counts(), val.class_counts()))
    assert all(n >= 1 for n in val.class_counts())
    assert _ids(proxy_split(indexed, seed=3, subset=500, val_fraction=0.3)[1]) == _ids(val)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"subset": 19}, "subset must be an integer from 20"),
    ({"subset": 1798}, "to 1797"),
    ({"val_fraction": 1.0}, "val_fraction"),
])
def test_impossible_splits_are_data_errors(digits: ImageSet, kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        proxy_split(digits, seed=0, **kwargs)


# -- resizing and augmentation ------------------------------------------------------------------


def test_resize_is_one_call_on_the_whole_set(digits: ImageSet) -> None:
    big = resize(digits.images, 32)
    assert big.shape == (1797, 3, 32, 32) and big.dtype == torch.uint8
    # Upsampling keeps the mean brightness of each image (within rounding and edge effects).
    assert torch.allclose(big.float().mean(dim=(1, 2, 3)), digits.images.float().mean(dim=(1, 2, 3)), atol=3.0)
    assert resize(digits.images, 8) is digits.images
    wide = torch.arange(2 * 3 * 4 * 8, dtype=torch.uint8).reshape(2, 3, 4, 8)
    assert torch.equal(resize(wide, 4), wide[..., 2:6])  # shorter side already 4: centre crop only


def test_augment_crops_shift_and_flips_mirror(digits: ImageSet) -> None:
    batch = resize(digits.images[:64], 16)
    generator = torch.Generator().manual_seed(0)
    out = augment_batch(batch, generator=generator, padding=2, flip=False)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    for i in range(64):  # every output is some 16x16 window of its padded input
        windows = padded[i].unfold(1, 16, 1).unfold(2, 16, 1)  # (3, 5, 5, 16, 16)
        assert any(torch.equal(windows[:, y, x], out[i]) for y in range(5) for x in range(5))
    assert not torch.equal(out, batch)

    flipped = augment_batch(batch, generator=torch.Generator().manual_seed(1), padding=0, flip=True)
    mirrored = [torch.equal(flipped[i], batch[i].flip(2)) for i in range(64)]
    kept = [torch.equal(flipped[i], batch[i]) for i in range(64)]
    assert all(m or k for m, k in zip(mirrored, kept)) and 16 < sum(mirrored) < 48
    again = augment_batch(batch, generator=torch.Generator().manual_seed(1), padding=0, flip=True)
    assert torch.equal(again, flipped)
