"""Registry dispatch, checkpoint inspection, the encoder cache and device/dtype choice.

Most tests use a fake family registered on the fly (no model weights), so they run in
milliseconds; dispatch on real layouts uses the tiny ColQwen2.5 checkpoints.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mmembed.encoders import (
    CheckpointFormatError,
    CheckpointNotFoundError,
    Encoder,
    LoadRequest,
    ModelFamily,
    UnknownModelError,
    clear_encoder_cache,
    inspect_checkpoint,
    list_models,
    load_encoder,
    match_family,
    register_family,
    unregister_family,
)
from mmembed.encoders.runtime import resolve_device, resolve_dtype, run_batched, size_sorted_batches
from mmembed.types import EncoderInfo, MMEmbedError

FAKE_TYPE = "mmembed-fake-test"


class FakeEncoder(Encoder):
    def __init__(self, request: LoadRequest) -> None:
        self.request = request
        self.info = EncoderInfo(request.name, "fake_test", "single", 4, "dot", request.revision)
        self.device, self.dtype = request.device, request.dtype

    def encode_queries(
        self, queries: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        return [torch.ones(1, 4) for _ in queries]

    def encode_images(
        self, images: Sequence[Image.Image], *, batch_size: int | None = None, progress: bool = False
    ) -> list[torch.Tensor]:
        return [torch.ones(1, 4) for _ in images]


@pytest.fixture
def fake_family() -> Iterator[list[LoadRequest]]:
    """Registers a family for configs with ``model_type == FAKE_TYPE``; yields its build log."""
    builds: list[LoadRequest] = []

    def build(request: LoadRequest) -> Encoder:
        builds.append(request)
        return FakeEncoder(request)

    register_family(
        ModelFamily(
            id="fake_test",
            kind="single",
            similarity="dot",
            dim=4,
            description="test family",
            matches=lambda facts: facts.model_type == FAKE_TYPE,
            build=build,
            options=("flavour",),
        )
    )
    clear_encoder_cache()
    yield builds
    unregister_family("fake_test")
    clear_encoder_cache()


def _write_checkpoint(folder: Path, config: dict[str, object]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"w": torch.zeros(1)}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture
def fake_checkpoint(tmp_path: Path) -> Path:
    # The folder name says "colqwen2.5": dispatch must not care.
    return _write_checkpoint(tmp_path / "colqwen2.5-v0.2", {"model_type": FAKE_TYPE, "architectures": ["X"]})


# --- dispatch -----------------------------------------------------------------------


def test_unknown_config_raises_listing_supported_families(tmp_path: Path) -> None:
    folder = _write_checkpoint(
        tmp_path / "colqwen2.5-lookalike", {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    )
    with pytest.raises(UnknownModelError) as info:
        load_encoder(folder)
    assert isinstance(info.value, MMEmbedError)
    message = str(info.value)
    assert "colqwen2_5" in message and "model_type='llama'" in message and "LlamaForCausalLM" in message


def test_dispatch_ignores_the_folder_name(tiny_colqwen2_5: Path, tmp_path: Path) -> None:
    renamed = shutil.copytree(tiny_colqwen2_5, tmp_path / "colpali-foo")
    assert match_family(inspect_checkpoint(renamed)).id == "colqwen2_5"
    encoder = load_encoder(renamed)
    assert encoder.info.family == "colqwen2_5" and encoder.info.kind == "multi" and encoder.info.dim == 128


def test_plain_qwen2_5_vl_without_projection_is_not_colqwen(tiny_colqwen2_5: Path, tmp_path: Path) -> None:
    """A Qwen2.5-VL chat model (no custom_text_proj anywhere) is not an embedding model."""
    folder = shutil.copytree(tiny_colqwen2_5, tmp_path / "qwen-vl")
    weights = {
        k: v for k, v in load_file(str(folder / "model.safetensors")).items() if "custom_text_proj" not in k
    }
    save_file(weights, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["Qwen2_5_VLForConditionalGeneration"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnknownModelError, match="colqwen2_5"):
        match_family(inspect_checkpoint(folder))
    # ... but the projection in the weights is enough, whatever the architectures say.
    save_file(load_file(str(tiny_colqwen2_5 / "model.safetensors")), str(folder / "model.safetensors"))
    assert match_family(inspect_checkpoint(folder)).id == "colqwen2_5"


def test_adapter_dispatches_on_its_base_config(tiny_colqwen2_5_lora: Path) -> None:
    facts = inspect_checkpoint(tiny_colqwen2_5_lora)
    assert facts.adapter is not None and facts.model_path == (
        tiny_colqwen2_5_lora.parent / "colqwen2.5-tiny-base"
    )
    assert facts.model_type == "qwen2_5_vl" and facts.adapter.mentions("custom_text_proj")
    assert match_family(facts).id == "colqwen2_5"


def test_registered_family_is_chosen_by_config(fake_family: list[LoadRequest], fake_checkpoint: Path) -> None:
    encoder = load_encoder(fake_checkpoint, flavour="mild")
    assert isinstance(encoder, FakeEncoder) and encoder.info.family == "fake_test"
    assert fake_family[0].options == {"flavour": "mild"}
    assert any(m["family"] == "fake_test" for m in list_models())


def test_unknown_option_is_refused(fake_family: list[LoadRequest], fake_checkpoint: Path) -> None:
    with pytest.raises(MMEmbedError, match="flavour"):
        load_encoder(fake_checkpoint, colour="red")


def test_registering_a_taken_id_needs_replace() -> None:
    from mmembed.encoders import get_family

    family = get_family("colqwen2_5")
    with pytest.raises(MMEmbedError, match="already registered"):
        register_family(family)
    assert register_family(family, replace=True) is family


def test_list_models_describes_colqwen2_5() -> None:
    (row,) = [m for m in list_models() if m["family"] == "colqwen2_5"]
    assert (row["kind"], row["dim"], row["similarity"]) == ("multi", 128, "maxsim")
    assert "vidore/colqwen2.5-v0.2" in row["checkpoints"] and row["notes"]
    assert "max_pixels" in row["options"]
    assert json.loads(json.dumps(row)) == row


# --- finding checkpoints ------------------------------------------------------------


def test_unreachable_hub_name_says_how_to_get_weights() -> None:
    with pytest.raises(CheckpointNotFoundError) as info:
        load_encoder("mmembed-nobody/no-such-model-xyz")
    assert "hf download mmembed-nobody/no-such-model-xyz --local-dir" in str(info.value)
    assert "local" in str(info.value)


def test_missing_local_folder_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint folder at"):
        load_encoder(str(tmp_path / "does" / "not" / "exist"))


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointFormatError, match=r"config\.json"):
        inspect_checkpoint(tmp_path)


def test_pickle_only_checkpoint_is_refused(fake_family: list[LoadRequest], tmp_path: Path) -> None:
    folder = tmp_path / "bin-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": FAKE_TYPE}))
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointFormatError, match="safetensors"):
        load_encoder(folder)


def test_adapter_with_unreachable_base_explains_and_base_model_overrides(
    tiny_colqwen2_5_lora: Path, tmp_path: Path
) -> None:
    adapter = shutil.copytree(tiny_colqwen2_5_lora, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "./models/ColQwen2.5-VL-3B-Instruct"  # as some published adapters say
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointNotFoundError) as info:
        inspect_checkpoint(adapter)
    assert "./models/ColQwen2.5-VL-3B-Instruct" in str(info.value) and "base_model=" in str(info.value)
    config["base_model_name_or_path"] = "mmembed-nobody/base-xyz"  # a Hub id that cannot be reached
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointNotFoundError, match="hf download mmembed-nobody/base-xyz --local-dir"):
        inspect_checkpoint(adapter)
    facts = inspect_checkpoint(adapter, base_model=tiny_colqwen2_5_lora.parent / "colqwen2.5-tiny-base")
    assert match_family(facts).id == "colqwen2_5"


# --- cache --------------------------------------------------------------------------


def test_same_request_returns_the_same_encoder(
    fake_family: list[LoadRequest], fake_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_encoder(fake_checkpoint)
    assert load_encoder(str(fake_checkpoint)) is first
    monkeypatch.chdir(fake_checkpoint.parent)
    assert load_encoder(fake_checkpoint.name, device="cpu" if first.device.type == "cpu" else None) is first
    assert load_encoder(fake_checkpoint, dtype=str(first.dtype).removeprefix("torch.")) is first
    assert len(fake_family) == 1
    assert first.info.name == str(fake_checkpoint.resolve())  # stable across working directories


def test_different_requests_get_different_encoders(
    fake_family: list[LoadRequest], fake_checkpoint: Path
) -> None:
    base = load_encoder(fake_checkpoint, device="cpu", dtype="float32")
    assert load_encoder(fake_checkpoint, device="cpu", dtype="bfloat16") is not base
    assert load_encoder(fake_checkpoint, device="cpu", dtype="float32", flavour="x") is not base
    assert load_encoder(fake_checkpoint, device="cpu", dtype="float32", revision="v1") is not base
    clear_encoder_cache()
    assert load_encoder(fake_checkpoint, device="cpu", dtype="float32") is not base


def test_concurrent_loads_build_once(fake_family: list[LoadRequest], fake_checkpoint: Path) -> None:
    results: list[Encoder] = []
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        results.append(load_encoder(fake_checkpoint, device="cpu"))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and all(r is results[0] for r in results)
    assert len(fake_family) == 1


# --- device, dtype, batching --------------------------------------------------------


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu") == resolve_device("auto")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device(None) == torch.device("cuda", 0) == resolve_device("cuda")


def test_unavailable_or_bad_device_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MMEmbedError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(MMEmbedError, match="unknown device"):
        resolve_device("tpu-please")


def test_dtype_auto_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert resolve_dtype(None, cpu) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype(None, cuda) == torch.float16
    assert resolve_dtype("bf16", cpu) == torch.bfloat16 == resolve_dtype(torch.bfloat16, cpu)
    assert resolve_dtype("torch.float16", cpu) == torch.float16
    with pytest.raises(MMEmbedError, match="unknown dtype"):
        resolve_dtype("int8", cpu)


def test_batches_are_size_sorted_and_results_keep_input_order() -> None:
    sizes = [3, 10, 1, 7, 5]
    assert size_sorted_batches(sizes, 2) == [[1, 3], [4, 0], [2]]
    seen: list[list[int]] = []

    def encode(batch: list[int]) -> list[torch.Tensor]:
        seen.append(batch)
        return [torch.full((1, 1), float(x)) for x in batch]

    out = run_batched(sizes, sizes, 2, encode)
    assert [int(t) for t in out] == sizes
    assert seen == [[10, 7], [5, 3], [1]]


def test_out_of_memory_halves_the_batch() -> None:
    calls: list[int] = []

    def encode(batch: list[int]) -> list[torch.Tensor]:
        calls.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [torch.tensor([[float(x)]]) for x in batch]

    items = list(range(8))
    out = run_batched(items, [1] * 8, 8, encode)
    assert [int(t) for t in out] == items
    assert calls[:3] == [8, 4, 2]


def test_weight_init_is_skipped_one_thread_at_a_time() -> None:
    """transformers' no_init_weights swaps torch's init functions process-wide; two loads
    overlapping in different threads could leave them swapped for good."""
    from mmembed.encoders.vlm import skipped_weight_init

    original = torch.nn.init.normal_
    inside, release = threading.Event(), threading.Event()
    entered: list[str] = []

    def first() -> None:
        with skipped_weight_init():
            entered.append("first")
            inside.set()
            release.wait(10)

    def second() -> None:
        with skipped_weight_init():
            entered.append("second")

    t1 = threading.Thread(target=first)
    t1.start()
    assert inside.wait(10)
    assert torch.nn.init.normal_ is not original  # skipped inside
    t2 = threading.Thread(target=second)
    t2.start()
    t2.join(0.3)
    assert entered == ["first"]  # the second load waits for the first to finish
    release.set()
    t1.join(10)
    t2.join(10)
    assert entered == ["first", "second"]
    assert torch.nn.init.normal_ is original  # and nothing stays swapped
