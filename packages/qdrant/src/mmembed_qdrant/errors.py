"""Qdrant's transport and HTTP errors as mmembed errors that say what to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mmembed.types import MMEmbedError


class QdrantUnavailableError(MMEmbedError, ConnectionError):
    """The Qdrant server could not be reached."""


class QdrantAuthError(MMEmbedError, PermissionError):
    """The Qdrant server refused the API key."""


@contextmanager
def translate_errors(action: str, location: str) -> Iterator[None]:
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    try:
        yield
    except MMEmbedError:
        raise
    except UnexpectedResponse as exc:
        if exc.status_code in (401, 403):
            raise QdrantAuthError(
                f"Qdrant at {location} refused to {action} (HTTP {exc.status_code}): the API key is wrong "
                "or missing. Pass api_key= (CLI: --api-key, or set QDRANT_API_KEY). Nothing was written."
            ) from exc
        raise MMEmbedError(
            f"Qdrant at {location} failed to {action} (HTTP {exc.status_code}): "
            f"{exc.content.decode(errors='replace')[:300]}"
        ) from exc
    except (ResponseHandlingException, ConnectionError, TimeoutError, OSError) as exc:
        raise QdrantUnavailableError(
            f"cannot reach Qdrant at {location} to {action} ({type(exc).__name__}: {exc}). Check the URL and "
            "that the server is running. Nothing was written."
        ) from exc
