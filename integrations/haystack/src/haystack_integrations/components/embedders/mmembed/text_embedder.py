"""``MMEmbedTextEmbedder``: query text → query embedding(s)."""

from __future__ import annotations

from typing import Any

from haystack import component, default_from_dict, default_to_dict
from haystack_integrations.document_stores.mmembed._component import EncoderComponentMixin
from haystack_integrations.document_stores.mmembed.provenance import remember_query

from mmembed.retrieve import check_query, pool


@component
class MMEmbedTextEmbedder(EncoderComponentMixin):
    """Embeds a query with the model that embedded the pages.

    Outputs both views of the query:

    - ``multi_embedding``: every query vector, ``n_vectors × dim`` (one row for
      single-vector models). Connect it to ``MMEmbedRetriever.query_multi_embedding``;
      this works for every model kind.
    - ``embedding``: one vector (the model's, or the pooled vector of a multi-vector
      model), for components that take Haystack's flat ``list[float]``.
    - ``encoder``: the model's description (``EncoderInfo.to_dict()``); connect it to
      ``MMEmbedRetriever.query_encoder`` so a query from another model is refused.

    ```python
    from haystack_integrations.components.embedders.mmembed import MMEmbedTextEmbedder

    embedder = MMEmbedTextEmbedder(model="vidore/colqwen2.5-v0.2")
    embedder.warm_up()
    result = embedder.run(text="solar capacity in 2023")
    len(result["multi_embedding"]), len(result["embedding"])
    ```
    """

    def __init__(
        self,
        *,
        model: str,
        revision: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """
        :param model: Hugging Face model id or local checkpoint folder (the one the pages were embedded with).
        :param revision: Model revision (commit, branch or tag) to pin.
        :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; default: the best available.
        :param dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``; default: chosen for the device.
        :param model_kwargs: Options of the model family (see ``mmembed models``), e.g.
            ``{"text_model": "nomic-ai/nomic-embed-text-v1.5", "matryoshka_dim": 256}``.
        """
        self._init_model(model, revision, device, dtype, model_kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Serialise the component."""
        return default_to_dict(self, **self._model_params())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MMEmbedTextEmbedder:
        """Deserialise the component."""
        return default_from_dict(cls, data)

    @component.output_types(embedding=list[float], multi_embedding=list[list[float]], encoder=dict[str, Any])
    def run(self, text: str) -> dict[str, Any]:
        """Embed one query.

        :param text: The query.
        :returns: ``embedding`` (one vector), ``multi_embedding`` (all query vectors) and
            ``encoder`` (which model made them).
        :raises ValueError: ``text`` is empty or blank.
        :raises TypeError: ``text`` is not a string (to embed pages use MMEmbedDocumentImageEmbedder).
        """
        if not isinstance(text, str):
            raise TypeError(
                "MMEmbedTextEmbedder expects a string as input; to embed page documents use "
                "MMEmbedDocumentImageEmbedder"
            )
        check_query(text)
        encoder = self._loaded_encoder()
        vectors = encoder.encode_queries([text])[0]  # (n_vectors, dim)
        embedding, multi_embedding = pool(vectors).tolist(), vectors.tolist()
        # The retriever checks the model from the vectors themselves, wired or not.
        remember_query(multi_embedding, encoder.info)
        remember_query([embedding], encoder.info)
        return {"embedding": embedding, "multi_embedding": multi_embedding, "encoder": encoder.info.to_dict()}

    @component.output_types(embedding=list[float], multi_embedding=list[list[float]], encoder=dict[str, Any])
    async def run_async(self, text: str) -> dict[str, Any]:
        """:meth:`run` without blocking the event loop (the model runs in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.run, text)
