"""mmembed converters for Haystack: files → page-image documents, recordings → segment documents."""

from .converter import PDFToPageImageDocuments
from .media_converter import MediaToSegmentDocuments

__all__ = ["MediaToSegmentDocuments", "PDFToPageImageDocuments"]
