"""HEIC and AVIF (made here from the real photos) and camera RAW: decoded as a viewer shows them, 10-bit read
as 8-bit, truncated files reported in one line, draft thumbnails, folder scans by suffix and by content."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageOps

from roost.data.datasets import is_image_file
from roost.data.decode import load_image
from roost.errors import ImageError
from roost.files.exif import display
from roost.files.heif import container_orientation, heif_kind
from roost.jobs.inputs import expand
from tests.conftest import SHARED

PHOTO = SHARED / "photos" / "kite.jpg"
pytestmark = pytest.mark.skipif(not PHOTO.exists(), reason="shared fixtures not present")


def photo(size: tuple[int, int] = (96, 64)) -> Image.Image:
    return Image.open(PHOTO).convert("RGB").resize(size)


def heic(image: Image.Image, orientation: int = 1, **options: object) -> bytes:
    """A HEIC file whose viewer rendition is ``image`` shown with EXIF ``orientation`` (as for a JPEG)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    pillow_heif.from_pillow(image).save(buf, quality=95, exif=exif.tobytes(), **options)  # type: ignore[arg-type]
    return buf.getvalue()


def avif(image: Image.Image, orientation: int = 1) -> bytes:
    """An AVIF file storing ``image`` with the container transform of EXIF ``orientation`` (irot/imir)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, format="AVIF", quality=95, subsampling="4:4:4", exif=exif.tobytes())
    return buf.getvalue()


def closest(decoded: Image.Image, image: Image.Image) -> int:
    """The orientation (1..8) whose display of ``image`` ``decoded`` is closest to."""
    errors = {}
    for o in range(1, 9):
        shown = display(image, o)
        if shown.size == decoded.size:
            errors[o] = np.abs(np.asarray(shown, dtype=float) - np.asarray(decoded, dtype=float)).mean()
    return min(errors, key=lambda o: errors[o])


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("make", [heic, avif], ids=["heic", "avif"])
def test_decoded_as_a_viewer_shows_it(make, orientation: int) -> None:
    image = photo()
    data = make(image, orientation)
    decoded = load_image(data)
    assert decoded.mode == "RGB"
    assert closest(decoded, image) == orientation
    assert np.abs(np.asarray(decoded, dtype=float) - np.asarray(display(image, orientation), dtype=float)).mean() < 4
    assert container_orientation(data) == orientation


@pytest.mark.parametrize("make", [heic, avif], ids=["heic", "avif"])
def test_same_pixels_as_the_viewer_rendition_saved_as_png(make) -> None:
    """The view libheif (transforms applied) or Pillow + exif_transpose renders, saved as PNG, decodes the same."""
    data = make(photo(), 6)
    if make is heic:
        view = pillow_heif.open_heif(io.BytesIO(data)).to_pillow()
    else:
        view = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    png = io.BytesIO()
    view.convert("RGB").save(png, format="PNG")
    assert np.array_equal(np.asarray(load_image(data)), np.asarray(load_image(png.getvalue())))


@pytest.mark.parametrize("make", [heic, avif], ids=["heic", "avif"])
def test_pixel_rotated_files_stay_as_stored(make) -> None:
    image = photo().rotate(90, expand=True)
    decoded = load_image(make(image))
    assert decoded.size == image.size == (64, 96)
    assert closest(decoded, image) == 1


@pytest.mark.parametrize("bits", [10, 12])
def test_high_bit_depth_heic_is_scaled_to_8_bits(bits: int) -> None:
    image = photo()
    samples = np.asarray(image).astype(np.uint16) * 257  # full 16-bit range; the encoder keeps ``bits`` of it
    pillow_heif.options.SAVE_HDR_TO_12_BIT = bits == 12
    try:
        heif = pillow_heif.from_bytes(mode="RGB;16", size=image.size, data=samples.tobytes())
        buf = io.BytesIO()
        heif.save(buf, quality=95)
    finally:
        pillow_heif.options.SAVE_HDR_TO_12_BIT = False
    assert pillow_heif.open_heif(io.BytesIO(buf.getvalue())).info["bit_depth"] == bits
    decoded = load_image(buf.getvalue())
    assert decoded.mode == "RGB"
    assert np.abs(np.asarray(decoded, dtype=float) - np.asarray(image, dtype=float)).mean() < 4  # not 1/4 or 1/16


@pytest.mark.parametrize("make,kind", [(heic, "HEIF"), (avif, "AVIF")], ids=["heic", "avif"])
def test_truncated_files_are_one_clear_error(tmp_path: Path, make, kind: str) -> None:
    data = make(photo())
    path = tmp_path / "cut.heic"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=f"corrupt or truncated {kind}") as caught:
        load_image(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_draft_decodes_a_large_enough_embedded_thumbnail() -> None:
    data = heic(photo((320, 240)), 6, thumbnails=[80])
    full, small = load_image(data), load_image(data, draft=(40, 40))
    assert full.size == (240, 320)
    assert small.size == (60, 80)  # the thumbnail, turned like the image
    assert closest(small, photo((80, 60))) == 6
    assert load_image(data, draft=(200, 200)).size == (240, 320)  # too small a thumbnail: the full image


def test_content_decides_the_format_whatever_the_suffix(tmp_path: Path) -> None:
    (tmp_path / "IMG_0001").write_bytes(heic(photo(), 6))  # no suffix
    (tmp_path / "IMG_0002.jpg").write_bytes(avif(photo(), 3))  # a wrong suffix
    (tmp_path / "notes").write_bytes(b"just text, no image here\n")
    (tmp_path / "IMG_0001.xmp").write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    (tmp_path / "photo.heic").write_bytes(heic(photo()))
    (tmp_path / "photo.avif").write_bytes(avif(photo()))
    listed = sorted(Path(item.key).name for item in expand([tmp_path]))
    assert listed == ["IMG_0001", "IMG_0002.jpg", "photo.avif", "photo.heic"]
    assert load_image(tmp_path / "IMG_0001").size == (64, 96)
    assert load_image(tmp_path / "IMG_0002.jpg").size == (96, 64)
    assert not is_image_file(tmp_path / "notes")


def test_heif_kind_reads_the_brands() -> None:
    assert heif_kind(heic(photo())[:32]) == "HEIF"
    assert heif_kind(avif(photo())[:32]) == "AVIF"
    assert heif_kind(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom") is None  # a Canon CR3 is not an image
    assert heif_kind(b"\xff\xd8\xff\xe0" + b"\x00" * 28) is None


def test_raw_without_rawpy_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "IMG_0001.CR2"
    path.write_bytes(b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "rawpy", None)  # import fails as when it is not installed
    with pytest.raises(ImageError, match=r"need rawpy: pip install 'roost\[raw\]'"):
        load_image(path)


def test_a_file_libraw_cannot_read_is_one_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("rawpy")
    path = tmp_path / "broken.nef"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    with pytest.raises(ImageError, match="not a camera RAW file LibRaw can read"):
        load_image(path)


def test_heif_decodes_through_pi_heif_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """pi-heif (roost's dependency) when pillow-heif (the optional encoder) is not installed."""
    pytest.importorskip("pi_heif")
    data = heic(photo(), 6)
    monkeypatch.setitem(sys.modules, "pillow_heif.as_plugin", None)
    assert closest(load_image(data), photo()) == 6


def test_without_a_heif_decoder_each_file_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = heic(photo())
    for module in ("pi_heif.as_plugin", "pillow_heif.as_plugin"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImageError, match=r"needs pi-heif \(pip install pi-heif\)"):
        load_image(data)


AVIFENC = shutil.which("avifenc")  # libavif's own encoder (Debian: libavif-bin): 10-bit, explicit irot/imir


@pytest.mark.skipif(AVIFENC is None, reason="avifenc (libavif-bin) not installed")
@pytest.mark.parametrize(
    "flags,orientation",
    [([], 1), (["--irot", "1"], 8), (["--irot", "3"], 6), (["--imir", "0"], 4), (["--imir", "1"], 2)],
    ids=["none", "irot1", "irot3", "imir0", "imir1"],
)
@pytest.mark.parametrize("depth", [8, 10])
def test_avif_from_libavif_with_its_own_transforms(tmp_path: Path, flags: list[str], orientation: int, depth: int):
    """A second writer: 8- and 10-bit AVIF with irot/imir set directly, read as a viewer shows it."""
    image = photo()
    image.save(tmp_path / "in.png")
    out = tmp_path / "out.avif"
    cmd = [
        str(AVIFENC),
        "--min",
        "0",
        "--max",
        "10",
        "-y",
        "444",
        "-d",
        str(depth),
        *flags,
        str(tmp_path / "in.png"),
        str(out),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    data = out.read_bytes()
    pixi = data.index(b"pixi") + 4  # the pixel information property: version/flags, channels, bits of each
    assert data[pixi + 5] == depth
    assert container_orientation(data) == orientation
    decoded = load_image(data)
    assert decoded.mode == "RGB" and closest(decoded, image) == orientation
    assert np.abs(np.asarray(decoded, dtype=float) - np.asarray(display(image, orientation), dtype=float)).mean() < 4


def test_the_container_parser_survives_every_truncation() -> None:
    data = heic(photo(), 6)
    meta_end = data.index(b"mdat") + 4
    for n in range(meta_end):
        with contextlib.suppress(ImageError):  # a clear error, or a value: never anything else
            assert container_orientation(data[:n]) in range(1, 9)
    assert container_orientation(data[:meta_end]) == 6  # the pixels are not needed
