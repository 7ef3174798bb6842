"""mmembed converters for Haystack: files → page-image documents."""

from .converter import PDFToPageImageDocuments

__all__ = ["PDFToPageImageDocuments"]
