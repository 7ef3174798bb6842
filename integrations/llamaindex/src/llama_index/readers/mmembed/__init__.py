"""LlamaIndex readers built on mmembed's loader: PDF pages (and images) as page images, and
audio / video files as time segments."""

from llama_index.readers.mmembed.base import PDFPageImageReader
from llama_index.readers.mmembed.media import MediaSegmentReader

__all__ = ["MediaSegmentReader", "PDFPageImageReader"]
