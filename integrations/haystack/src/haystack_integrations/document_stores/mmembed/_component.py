"""Model settings and lazy encoder loading shared by the components that run an mmembed model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mmembed

if TYPE_CHECKING:
    from mmembed.encoders.base import Encoder


class EncoderComponentMixin:
    """Holds ``model``/``revision``/``device``/``dtype`` and loads the encoder on ``warm_up()``."""

    model: str
    revision: str | None
    device: str | None
    dtype: str | None
    model_kwargs: dict[str, Any] | None
    _encoder: Encoder | None

    def _init_model(
        self,
        model: str,
        revision: str | None,
        device: str | None,
        dtype: str | None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.revision = revision
        self.device = device
        self.dtype = dtype
        self.model_kwargs = dict(model_kwargs) if model_kwargs else None
        self._encoder = None

    def _model_params(self) -> dict[str, Any]:
        """The model settings, as ``to_dict`` serialises them."""
        params: dict[str, Any] = {
            "model": self.model,
            "revision": self.revision,
            "device": self.device,
            "dtype": self.dtype,
        }
        if self.model_kwargs:  # family options (e.g. Nomic's text_model); absent when unused
            params["model_kwargs"] = self.model_kwargs
        return params

    def warm_up(self) -> None:
        """Load the model (shared with every component using the same model in this process)."""
        if self._encoder is None:
            self._encoder = mmembed.load_encoder(
                self.model,
                revision=self.revision,
                device=self.device,
                dtype=self.dtype,
                **(self.model_kwargs or {}),
            )

    def _loaded_encoder(self) -> Encoder:
        """Warm up if needed and return the encoder."""
        self.warm_up()
        assert self._encoder is not None
        return self._encoder
