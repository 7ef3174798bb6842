"""Any Pillow image as 8-bit RGB, one rule for every path (page loader and encoders alike):
alpha composited on white, 16-bit and float greys rescaled, CMYK through its ICC profile."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

WHITE = (255, 255, 255)
MAX_PAGE_PIXELS = 4096 * 4096
"""Largest page (in pixels) that reaches a model's processor as it is, on every path: the page
loaders decode images to at most this size, and the encoders downscale a larger page given to
them directly (aspect ratio kept). 16.8 MP is twice a 300-dpi letter scan and above what any
supported model takes in, so ordinary scans and photos get the processor's own resize alone,
while a batch of huge images holds bounded pages (48 MB of RGB each)."""
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WIDE_GRAY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha is composited on white, 16-bit and float
    greys are rescaled (not clipped), CMYK goes through its embedded ICC profile if any."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "La":  # premultiplied: Pillow only converts it to LA
        image, mode = image.convert("LA"), "LA"
    if mode in _WIDE_GRAY_MODES:
        return Image.fromarray(_gray_to_uint8(np.asarray(image)), mode="L").convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode == "P" and (image.palette is not None and image.palette.mode == "RGBA"):
        return _flatten(image.convert("RGBA"))
    if mode in _ALPHA_MODES or "transparency" in image.info:
        return _flatten(image.convert("RGBA"))
    if mode == "LAB":
        return _via_icc(image, "LAB")
    return image.convert("RGB")


def _flatten(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
    return background


def _gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map 16-bit / 32-bit / float greys onto 0..255 by their value range."""
    array = values.astype(np.float64)
    low, high = float(array.min(initial=0.0)), float(array.max(initial=0.0))
    if values.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        scaled = array * 255.0
    elif low >= 0.0 and high <= 255.0 and values.dtype.kind != "u":
        scaled = array
    elif low >= 0.0 and high <= 65535.0:
        scaled = array / 257.0  # 16-bit full range onto 8-bit
    else:
        span = high - low or 1.0
        scaled = (array - low) * (255.0 / span)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    if image.info.get("icc_profile"):
        try:
            return _via_icc(image, "CMYK")
        except Exception:  # a broken embedded profile: fall back to Pillow's plain formula
            pass
    return image.convert("RGB")


def _via_icc(image: Image.Image, mode: str) -> Image.Image:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    if mode == "LAB":
        source = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    else:
        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
    converted = ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    assert converted is not None
    return converted


__all__ = ["WHITE", "to_rgb"]
