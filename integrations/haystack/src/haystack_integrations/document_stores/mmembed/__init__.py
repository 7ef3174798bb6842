"""mmembed's page index as a Haystack document store."""

from .document_store import MMEmbedDocumentStore
from .documents import EMBEDDING_META_KEY, InvalidDocumentError
from .filters import translate_filters

__all__ = ["EMBEDDING_META_KEY", "InvalidDocumentError", "MMEmbedDocumentStore", "translate_filters"]
