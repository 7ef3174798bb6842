"""LlamaIndex reader of PDF pages (and images) as page images, built on mmembed's loader."""

from llama_index.readers.mmembed.base import PDFPageImageReader

__all__ = ["PDFPageImageReader"]
