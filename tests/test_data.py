"""Decoding and validating images, ImageFolder folders and archives, batch augmentation."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from vt_explorer.data import (
    DatasetError,
    augment_batch,
    check_same_classes,
    decode_image,
    load_image_folder,
)

from .imagegen import image_bytes, make_dataset, make_image

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_decode_modes_all_become_rgb() -> None:
    base = make_image((10, 200, 30), 20)
    variants = {
        "gray": base.convert("L"),
        "rgba": base.convert("RGBA"),
        "palette": base.convert("P"),
        "cmyk": base.convert("CMYK"),
        "16bit": Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 256),
    }
    for name, img in variants.items():
        fmt = "JPEG" if name == "cmyk" else "PNG"
        out = decode_image(image_bytes(img, fmt), name)
        assert out.mode == "RGB" and out.size == (20, 20), name


def test_decode_first_frame_of_animated_gif() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:])
    out = decode_image(data, "anim.gif")
    r, _g, b = out.getpixel((4, 4))
    assert r > 200 and b < 50


def test_decode_honours_exif_rotation() -> None:
    img = Image.new("RGB", (30, 10), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    out = decode_image(image_bytes(img, "JPEG", exif=exif), "rotated.jpg")
    assert out.size == (10, 30)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"hello, I am a text file", "not an image"),
        (image_bytes(make_image((1, 2, 3), 64), "JPEG")[:300], "unreadable image"),
    ],
)
def test_decode_bad_input_names_the_file(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=f"bad.bin: {message}"):
        decode_image(data, "bad.bin")


@pytest.mark.parametrize("fmt", ["ICO", "PCX", "TGA", "PPM", "EPS"])
def test_only_the_six_formats_are_read_whatever_the_name(fmt: str) -> None:
    """ICO, PCX, TGA, PPM or EPS data named .png: refused by content, naming the formats
    read (EPS is never handed to Ghostscript)."""
    img = make_image((200, 20, 20), 32)
    with pytest.raises(ValueError, match=r"fake\.png: not an image \(JPEG, PNG, WebP"):
        decode_image(image_bytes(img, fmt), "fake.png")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_the_six_formats_decode(fmt: str) -> None:
    assert decode_image(image_bytes(make_image((20, 200, 20), 32), fmt), "x").size == (32, 32)


def test_a_float_tiff_is_scaled_by_its_own_range_not_clipped() -> None:
    """A float32 TIFF with values 0-1000 keeps its gradient (scaled to 0-255), instead of
    clipping everything above 255 to white."""
    ramp = np.tile(np.linspace(0, 1000, 64, dtype=np.float32), (8, 1))
    out = np.asarray(decode_image(image_bytes(Image.fromarray(ramp, mode="F"), "TIFF"), "f.tif"))
    row = out[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and (np.diff(row) >= 0).all()
    assert len(set(row.tolist())) > 50  # a gradient, not a clipped block


def test_decode_rejects_decompression_bomb() -> None:
    bomb = image_bytes(Image.new("1", (9000, 9000)), "PNG")
    with pytest.raises(ValueError, match="too large"):
        decode_image(bomb, "bomb.png")


def test_one_pixel_image_is_fine() -> None:
    assert decode_image(image_bytes(Image.new("RGB", (1, 1)), "PNG"), "dot").size == (1, 1)


def test_folder_and_archive_agree_and_cache(tmp_path) -> None:
    root = make_dataset(tmp_path / "ds" / "train", per_class=5)
    (root / "red" / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="notes.txt"):
        ds = load_image_folder(root, 32, progress=False)
    assert ds.classes == ["blue", "green", "red"]
    assert len(ds) == 15 and ds.images.dtype == torch.uint8
    assert len(ds.skipped) == 1
    archive = tmp_path / "train.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="train")
    with pytest.warns(UserWarning):
        from_tar = load_image_folder(archive, 32, progress=False)
    assert torch.equal(from_tar.images, ds.images) and torch.equal(from_tar.labels, ds.labels)
    again = load_image_folder(archive, 32, progress=False)  # from the cache: no warning
    assert torch.equal(again.images, ds.images) and again.skipped == from_tar.skipped


def test_resize_to_input_size(tmp_path) -> None:
    root = make_dataset(tmp_path / "big", per_class=2, size=50, fmt="JPEG")
    ds = load_image_folder(root, 24, progress=False)
    assert ds.images.shape == (6, 3, 24, 24)


def test_dataset_errors(tmp_path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no class folders"):
        load_image_folder(tmp_path / "flat")
    root = make_dataset(tmp_path / "ds", per_class=2)
    (root / "empty").mkdir()
    with pytest.raises(DatasetError, match="without a readable image: empty"):
        load_image_folder(root, progress=False)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DatasetError, match="not a dataset"):
        load_image_folder(tmp_path / "x.txt")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match="not a readable tar archive"):
        load_image_folder(bad)


def test_class_sets_must_match(tmp_path) -> None:
    a = load_image_folder(make_dataset(tmp_path / "a", per_class=1), progress=False)
    (tmp_path / "b").mkdir()
    make_dataset(tmp_path / "b", per_class=1)
    (tmp_path / "b" / "red").rename(tmp_path / "b" / "yellow")
    b = load_image_folder(tmp_path / "b", progress=False)
    with pytest.raises(DatasetError, match=r"only in the first \['red'\]"):
        check_same_classes(a, b)


def test_augment_batch_crops_and_flips() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6) + 1
    same = augment_batch(x, g, pad=0)
    for i in range(2):
        assert torch.equal(same[i], x[i]) or torch.equal(same[i], x[i].flip(-1))
    out = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == x.shape
    values = set(x.flatten().tolist()) | {0.0}
    assert set(out.flatten().tolist()) <= values
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def _tar(root, archive, mode: str) -> None:
    with tarfile.open(archive, mode) as tar:
        tar.add(root, arcname="train")


def test_damaged_archives_are_refused_whole_never_read_in_part(tmp_path) -> None:
    """A tar with a damaged header in the middle, a gzip with flipped bytes or a truncated
    gzip is refused with one message naming the archive: never a partial dataset."""
    root = make_dataset(tmp_path / "d", per_class=8)
    plain = tmp_path / "train.tar"
    _tar(root, plain, "w")
    raw = bytearray(plain.read_bytes())
    with tarfile.open(plain) as tar:
        members = tar.getmembers()
    hdr = members[len(members) // 2].offset  # a header in the middle of the archive
    raw[hdr : hdr + 100] = bytes(100)  # the name field zeroed: the header checksum fails
    raw[hdr + 148 : hdr + 156] = b"garbage!"
    bad_header = tmp_path / "header.tar"
    bad_header.write_bytes(bytes(raw))
    with tarfile.open(bad_header) as tar:
        assert len(tar.getmembers()) < len(members)  # tarfile alone: silently fewer members
    with pytest.raises(DatasetError, match=r"header\.tar: damaged archive.*after member"):
        load_image_folder(bad_header, 32, progress=False)

    gz = tmp_path / "train.tar.gz"
    _tar(root, gz, "w:gz")
    data = gz.read_bytes()
    flipped = bytearray(data)
    for i in range(len(data) // 2, len(data) // 2 + 64):
        flipped[i] ^= 0xFF
    (tmp_path / "flipped.tar.gz").write_bytes(bytes(flipped))
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) * 2 // 3])
    for name in ("flipped.tar.gz", "cut.tar.gz"):
        with pytest.raises(DatasetError, match=rf"{name}: damaged archive") as err:
            load_image_folder(tmp_path / name, 32, progress=False)
        assert "\n" not in str(err.value)
    # the intact archive still reads whole, with every file counted
    ds = load_image_folder(gz, 32, progress=False)
    assert len(ds) == 24 and ds.skipped == []


def test_cli_refuses_a_damaged_archive_with_one_line(tmp_path, capsys) -> None:
    from vt_explorer.cli import main

    root = make_dataset(tmp_path / "d", per_class=4)
    gz = tmp_path / "val.tar.gz"
    _tar(root, gz, "w:gz")
    data = gz.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    out = tmp_path / "ck"
    code = main(
        [
            "train",
            "--config",
            "vt_resnet20",
            "--train",
            str(tmp_path / "cut.tar.gz"),
            "--val",
            str(gz),
            "--out",
            str(out),
            "--epochs",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cut.tar.gz: damaged archive" in err and "Traceback" not in err
    assert not (tmp_path / "ck.json").exists()


def test_an_unsorted_archive_is_read_once_in_its_own_order_and_handed_out_sorted(tmp_path):
    """gzip cannot seek back, so members read out of archive order were decompressed again
    from the start each time (O(n^2)); an archive written in reverse order gives the same
    images in the same sorted order as a sorted one, read in one pass."""
    import tarfile

    from vt_explorer.data import _iter_archive

    src = make_dataset(tmp_path / "src", per_class=3, size=8)
    files = sorted(p for p in src.rglob("*.png"))
    for name, order in (("sorted", files), ("reversed", files[::-1])):
        with tarfile.open(tmp_path / f"{name}.tar.gz", "w:gz") as tar:
            for f in order:
                tar.add(f, arcname=f"train/{f.parent.name}/{f.name}")
    a = list(_iter_archive(tmp_path / "sorted.tar.gz"))
    b = list(_iter_archive(tmp_path / "reversed.tar.gz"))
    assert [x[1] for x in a] == sorted(x[1] for x in a) and a == b
    assert [x[2] for x in b] == [f.read_bytes() for f in files]


def _tar_of(path, members: dict) -> None:
    """A .tar.gz from {name: bytes, or ("symlink"|"hardlink", target)}."""
    import io as _io

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type = tarfile.SYMTYPE if data[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, _io.BytesIO(data))


def test_an_archive_follows_a_folders_rules(tmp_path, monkeypatch) -> None:
    """Issue 30, item 4: a class whose files are all unreadable is refused in an archive as
    in a folder (it used to vanish: training on the other classes); links and devices are
    named, not dropped; an oversized member is named and never read."""
    import vt_explorer.data as data_mod

    png = image_bytes(make_image((200, 20, 20), 16))
    _tar_of(tmp_path / "a.tar.gz", {"cat/1.png": png, "bird/1.png": png, "dog/1.png": b"no"})
    for src in (tmp_path / "a.tar.gz",):
        with pytest.raises(ValueError, match="without a readable image: dog"):
            load_image_folder(src, 16, use_cache=False, progress=False)
    folder = tmp_path / "f"
    for c, d in (("cat", png), ("bird", png), ("dog", b"no")):
        (folder / c).mkdir(parents=True)
        (folder / c / "1.png").write_bytes(d)
    with pytest.raises(ValueError, match="without a readable image: dog"):
        load_image_folder(folder, 16, use_cache=False, progress=False)
    members = {"cat/1.png": png, "cat/link.png": ("symlink", "1.png")}
    members |= {"dog/1.png": png, "dog/hard.png": ("hardlink", "dog/1.png"), "dog/big.png": png}
    _tar_of(tmp_path / "b.tar.gz", members)
    monkeypatch.setattr(data_mod, "MAX_MEMBER_BYTES", len(png) - 1)  # every png "too big"
    monkeypatch.setattr(data_mod, "_member_bytes", lambda *a: pytest.fail("read a member"))
    with (
        pytest.warns(UserWarning, match="dog/big.png: more than an image file may be"),
        pytest.raises(ValueError, match="no readable image inside class folders"),
    ):
        load_image_folder(tmp_path / "b.tar.gz", 16, use_cache=False, progress=False)
    monkeypatch.undo()
    with pytest.warns(UserWarning) as seen:
        ds = load_image_folder(tmp_path / "b.tar.gz", 16, use_cache=False, progress=False)
    said = " ".join(str(w.message) for w in seen)
    assert "cat/link.png: a symbolic link, not an image file" in said
    assert "dog/hard.png: a hard link, not an image file" in said
    assert ds.classes == ["cat", "dog"] and len(ds) == 3


def test_a_cached_rerun_names_the_skipped_files_again(tmp_path, monkeypatch) -> None:
    """The second read of a dataset comes from the cache and still warns about every file
    it skipped (a cached eval used to print nothing)."""
    monkeypatch.setenv("VT_EXPLORER_CACHE", str(tmp_path / "cache"))
    root = make_dataset(tmp_path / "ds", per_class=2)
    (root / sorted(p.name for p in root.iterdir())[0] / "notes.png").write_bytes(b"text")
    for _ in range(2):
        with pytest.warns(UserWarning, match="notes.png: not an image"):
            load_image_folder(root, 16, progress=False)
