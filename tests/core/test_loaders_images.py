"""Image files as pages: every pixel mode to RGB, frames, EXIF, bombs, in-memory sources."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmembed.loaders import BytesSource, LoadError, load_pages, make_thumbnail, render_page, to_rgb


def png_bytes(width: int, height: int, *, bit_depth: int, color_type: int, rows: bytes = b"") -> bytes:
    """A PNG written by hand, for what Pillow cannot save (16-bit RGB, absurd headers)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def only_page(path, **kwargs):
    stream = load_pages(path, **kwargs)
    pages = list(stream)
    assert stream.issues == [], [str(i) for i in stream.issues]
    assert len(pages) == 1
    return pages[0]


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


@pytest.mark.parametrize(
    ("name", "make", "pixel", "expected"),
    [
        ("one_bit.bmp", lambda: Image.new("1", (8, 8), 1), (0, 0), (255, 255, 255)),
        ("gray.png", lambda: Image.new("L", (8, 8), 128), (0, 0), (128, 128, 128)),
        ("rgb.jpg", lambda: Image.new("RGB", (16, 16), (200, 30, 40)), (8, 8), (200, 30, 40)),
        ("rgba.png", lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 128)), (0, 0), (255, 127, 127)),
        ("rgba.webp", lambda: Image.new("RGBA", (8, 8), (0, 0, 255, 0)), (0, 0), (255, 255, 255)),
        ("la.png", lambda: Image.new("LA", (8, 8), (0, 0)), (0, 0), (255, 255, 255)),
        ("cmyk.jpg", lambda: Image.new("CMYK", (16, 16), (255, 0, 0, 0)), (8, 8), (0, 255, 255)),
        ("cmyk.tif", lambda: Image.new("CMYK", (8, 8), (0, 255, 0, 0)), (0, 0), (255, 0, 255)),
        ("palette.png", lambda: Image.new("RGB", (8, 8), (0, 128, 0)).quantize(4), (0, 0), (0, 128, 0)),
    ],
)
def test_pixel_modes_become_rgb(tmp_path, name, make, pixel, expected):
    path = save(make(), tmp_path / name, **({"quality": 100} if name.endswith("jpg") else {}))
    page = only_page(path)
    image = page.image
    assert image.mode == "RGB" and page.render["backend"] == "pillow"
    assert all(abs(a - b) <= 4 for a, b in zip(image.getpixel(pixel), expected, strict=True)), image.getpixel(
        pixel
    )


def test_palette_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    path = save(image, tmp_path / "transparent.gif", transparency=0)
    rgb = only_page(path).image
    assert rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 1)) == (255, 0, 0)


def test_16_bit_and_float_greys_are_rescaled_not_clipped(tmp_path):
    wide = np.array([[0, 32896, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(wide), tmp_path / "gray16.png")
    assert Image.open(path).mode.startswith("I")
    assert [only_page(path).image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]

    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = save(Image.fromarray(floats, mode="F"), tmp_path / "float.tif")
    assert [only_page(path).image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]

    int32 = np.array([[0, 32896, 65535]], dtype=np.int32)
    path = save(Image.fromarray(int32, mode="I"), tmp_path / "int32.tif")
    assert [only_page(path).image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_16_bit_rgb_png(tmp_path):
    # one row: a 16-bit red pixel (0xFFFF, 0, 0x8000) then a dark one (0x0100, 0x0200, 0x0300)
    row = b"\x00" + struct.pack(">6H", 0xFFFF, 0, 0x8000, 0x0100, 0x0200, 0x0300)
    path = tmp_path / "rgb16.png"
    path.write_bytes(png_bytes(2, 1, bit_depth=16, color_type=2, rows=row))
    image = only_page(path).image
    assert image.getpixel((0, 0)) == (255, 0, 128) and image.getpixel((1, 0)) == (1, 2, 3)


def test_to_rgb_direct():
    assert to_rgb(Image.new("RGB", (2, 2))).mode == "RGB"
    assert to_rgb(Image.new("La", (2, 2), (0, 0))).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("YCbCr", (2, 2), (128, 128, 128))).mode == "RGB"


def test_gif_uses_its_first_frame_only(tmp_path):
    frames = [Image.new("RGB", (10, 10), color) for color in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    page = only_page(path)
    assert page.page_count == 1 and page.image.getpixel((5, 5)) == (255, 0, 0)


def test_multipage_tiff_gives_one_page_per_frame(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (20 + i, 10), c) for i, c in enumerate(colors)]
    path = tmp_path / "scan.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    stream = load_pages(path)
    pages = list(stream)
    assert [(p.page, p.page_count) for p in pages] == [(1, 3), (2, 3), (3, 3)]
    assert [p.image.getpixel((0, 0)) for p in pages] == colors
    assert [p.image.size for p in pages] == [(20, 10), (21, 10), (22, 10)]
    assert len({p.id for p in pages}) == 3
    assert [p.page for p in load_pages(path, page_range="2-")] == [2, 3]
    assert render_page(path, 3).getpixel((0, 0)) == (0, 0, 255)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (200, 100), (255, 0, 0))
    image.paste((0, 0, 255), (100, 0, 200, 100))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    path = save(image, tmp_path / "photo.jpg", exif=exif, quality=95)
    page = only_page(path)
    upright = page.image
    assert upright.size == (100, 200) == (page.render["width"], page.render["height"])
    top, bottom = upright.getpixel((50, 20)), upright.getpixel((50, 180))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_max_pixels_downscales_images(tmp_path):
    path = save(Image.new("RGB", (400, 300), (9, 9, 9)), tmp_path / "big.png")
    page = only_page(path, max_pixels=12_000)
    width, height = page.image.size
    assert width * height <= 12_000 and abs(width / height - 4 / 3) < 0.02
    assert (width, height) == (page.render["width"], page.render["height"])
    jpeg = save(Image.new("RGB", (800, 600), (9, 9, 9)), tmp_path / "big.jpg")
    assert only_page(jpeg, max_pixels=30_000).image.size == (200, 150)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused_from_the_header(tmp_path):
    good = save(Image.new("RGB", (10, 10)), tmp_path / "a_good.png")
    # headers only: decoding these would need gigabytes
    (tmp_path / "bomb_120mp.png").write_bytes(png_bytes(12_000, 10_000, bit_depth=8, color_type=0))
    (tmp_path / "bomb_2500mp.png").write_bytes(png_bytes(50_000, 50_000, bit_depth=8, color_type=0))
    save(Image.new("L", (2000, 2000)), tmp_path / "big_4mp.png")
    stream = load_pages(tmp_path)
    assert [Path(p.source).name for p in stream] == ["a_good.png", "big_4mp.png"]
    assert {Path(i.source).name: i.code for i in stream.issues} == {
        "bomb_120mp.png": "image_too_large",
        "bomb_2500mp.png": "image_too_large",
    }
    assert "max_image_pixels" in str(stream.issues[0]) and "120 M pixels" in str(stream.issues[0])
    # the cap is configurable
    stream = load_pages([good, tmp_path / "big_4mp.png"], max_image_pixels=1_000_000)
    assert [Path(p.source).name for p in stream] == ["a_good.png"]
    assert stream.issues[0].code == "image_too_large" and "1_000_000" in str(stream.issues[0])


def test_one_oversized_tiff_frame_is_a_page_error(tmp_path):
    frames = [Image.new("L", (10, 10)), Image.new("L", (1000, 1000)), Image.new("L", (10, 10))]
    path = tmp_path / "scan.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    stream = load_pages(path, max_image_pixels=10_000)
    assert [p.page for p in stream] == [1, 3]
    assert [(i.page, i.code) for i in stream.issues] == [(2, "image_too_large")]


def test_damaged_images(tmp_path):
    png = io.BytesIO()
    Image.effect_noise((300, 300), 64).save(png, format="PNG")
    (tmp_path / "truncated.png").write_bytes(png.getvalue()[:2000])
    (tmp_path / "text.png").write_bytes(b"this is not an image at all")
    save(Image.new("RGB", (5, 5)), tmp_path / "z_ok.png")
    stream = load_pages(tmp_path, prefetch=2)
    assert [Path(p.source).name for p in stream] == ["z_ok.png"]
    assert {(Path(i.source).name, i.page): i.code for i in stream.issues} == {
        ("text.png", None): "corrupt_image",
        ("truncated.png", 1): "corrupt_image",
    }
    # lazily (prefetch=0) the decode error surfaces where the image is asked for
    (page,) = list(load_pages(tmp_path / "truncated.png", prefetch=0))
    with pytest.raises(LoadError, match=r"truncated.png, page 1: could not be decoded"):
        _ = page.image


def png_of(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (7, 5), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bytes_and_file_like_sources(tmp_path):
    disk = tmp_path / "on_disk.png"
    disk.write_bytes(png_of((4, 4, 4)))
    named = io.BytesIO(png_of((3, 3, 3)))
    named.name = "upload.png"
    with open(disk, "rb") as handle:
        stream = load_pages(
            [
                ("pair.png", png_of((1, 1, 1))),
                BytesSource("source.png", png_of((2, 2, 2))),
                named,
                handle,  # a real file object: named by its path
                png_of((5, 5, 5)),  # no name: the type is sniffed from the bytes
                io.BytesIO(png_of((6, 6, 6))),  # no name either
                ("again.png", png_of((1, 1, 1))),  # same bytes as pair.png
            ],
            prefetch=0,
        )
        pages = list(stream)
    assert [p.source for p in pages] == [
        "pair.png", "source.png", "upload.png", str(disk), "<bytes #1>", "<stream #2>"
    ]  # fmt: skip
    assert [p.image.getpixel((0, 0))[0] for p in pages] == [1, 2, 3, 4, 5, 6]
    (duplicate,) = stream.issues
    assert (
        duplicate.code == "duplicate" and duplicate.source == "again.png" and "pair.png" in duplicate.reason
    )
    assert stream.files_loaded == 6
    with pytest.raises(TypeError, match="binary mode"):
        list(load_pages(io.StringIO("text")))
    with pytest.raises(TypeError, match="cannot load pages from a int"):
        list(load_pages(42))


def test_make_thumbnail():
    image = Image.new("RGBA", (1000, 500), (10, 200, 30, 255))
    thumb = make_thumbnail(image, max_side=128)
    decoded = Image.open(io.BytesIO(thumb))
    assert decoded.format == "JPEG" and decoded.size == (128, 64) and decoded.mode == "RGB"
    assert make_thumbnail(Image.new("RGB", (50, 40)))[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(make_thumbnail(Image.new("RGB", (50, 40))))).size == (50, 40)
    with pytest.raises(ValueError):
        make_thumbnail(image, max_side=0)


def test_cmyk_with_a_broken_icc_profile_falls_back_to_plain_conversion(tmp_path):
    # (No CMYK ICC profile ships with the test environment, so only the fallback is covered.)
    path = save(
        Image.new("CMYK", (8, 8), (255, 0, 0, 0)),
        tmp_path / "cmyk_icc.jpg",
        icc_profile=b"broken",
        quality=100,
    )
    assert Image.open(path).info.get("icc_profile") == b"broken"
    assert all(
        abs(a - b) <= 4 for a, b in zip(only_page(path).image.getpixel((4, 4)), (0, 255, 255), strict=True)
    )


def test_long_tiff_is_read_in_one_pass(tmp_path, monkeypatch):
    """Each frame used to reopen the file and seek from frame 0 (quadratic: 4000 frames took
    211 s); the file now stays open while its pages are rendered."""
    from mmembed.loaders.images import ImageHandle

    frames = [Image.new("L", (6, 4), i % 256) for i in range(300)]
    path = tmp_path / "long.tiff"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    opened = []
    original = ImageHandle._open

    def counting(self):
        opened.append(1)
        return original(self)

    monkeypatch.setattr(ImageHandle, "_open", counting)
    pages = list(load_pages([path]))
    assert [p.page for p in pages] == list(range(1, 301))
    assert [p.image.getpixel((0, 0))[0] for p in pages] == [i % 256 for i in range(300)]
    assert len(opened) == 1
    # a page rendered after the document was closed still works (it reopens the file)
    assert render_page(path, 300).getpixel((0, 0))[0] == 299 % 256


def test_huge_images_are_decoded_to_a_bounded_page(tmp_path):
    """Without max_pixels, a page still never holds more than MAX_DECODED_PIXELS: a batch of
    huge scans is bounded by the batch, not by the source images (issue 30, item 14)."""
    from mmembed.loaders.images import MAX_DECODED_PIXELS

    for suffix in ("png", "jpg"):
        path = save(Image.new("RGB", (6000, 4000), (200, 10, 10)), tmp_path / f"huge.{suffix}")
        page = only_page(path)
        width, height = page.image.size
        assert width * height <= MAX_DECODED_PIXELS and abs(width / height - 1.5) < 0.01
        assert (width, height) == (page.render["width"], page.render["height"])
    small = save(Image.new("RGB", (300, 200), (9, 9, 9)), tmp_path / "small.png")
    assert only_page(small).image.size == (300, 200)  # smaller pages are left as they are
