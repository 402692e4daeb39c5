"""The zoo's registry: every model, its tiny config, how its users save it, its inputs.

Each model's factory lives beside its recipe, in ``zoo/<name>/modeling_<name>.py``
(modelbuild imports ``source.model`` relative to the recipe's folder, and keys the
module's bytes), with two callables:

- ``build(**args)``: the model modelbuild loads: the third-party class (or a subclass
  with the same parameters and state_dict keys) whose ``forward`` takes plain tensors
  and returns a tensor;
- ``trained(**args)`` (Hugging Face models only): the plain class its users train and
  ``save_pretrained``.

``args`` below are the tiny config, written into the recipe's ``source.args`` too.
Nothing here downloads anything: configs are built in code, weights are seeded.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ZOO_DIR = Path(__file__).resolve().parent
SEED = 0

TARGETS: dict[str, dict[str, Any]] = {
    "onnx": {"format": "onnx", "precision": "fp32"},
    "onnx-fp16": {"format": "onnx", "precision": "fp16"},
    "onnx-int8": {"format": "onnx", "precision": "int8", "quantize": {"mode": "dynamic"}},
    "openvino-fp16": {"format": "openvino", "precision": "fp16"},
    # the alternative converter: OpenVINO's own PyTorch frontend, from the torch module
    "openvino-torch": {"format": "openvino", "precision": "fp16", "converter": "torch"},
    # onnx2tf and coremltools fix every dynamic axis on many of these graphs (their
    # static-shape retries): declared, as the dynamic-shape contract asks; the lock says so
    "tflite": {"format": "tflite", "precision": "fp32", "static_shapes": True},
    "coreml-fp16": {"format": "coreml", "precision": "fp16", "static_shapes": True},
    "torchscript": {"format": "torchscript", "method": "trace"},
    "savedmodel": {"format": "savedmodel", "static_shapes": True},
    # needs an NVIDIA GPU and TensorRT: elsewhere a plan-time refusal naming both (exit 2)
    "tensorrt-fp16": {"format": "tensorrt", "precision": "fp16"},
}

# how the checkpoint is written (see make.py)
# - save_pretrained: HF model.safetensors (tied duplicates left out) + config.json
# - training_checkpoint: torch.save({"epoch", "model_state_dict", "optimizer_state_dict", "loss"})
# - state_dict: torch.save(model.state_dict())
# - compiled_state_dict: torch.save(torch.compile(model).state_dict()), keys "_orig_mod.*"
SAVE_PRETRAINED = "save_pretrained"
TRAINING_CHECKPOINT = "training_checkpoint"
STATE_DICT = "state_dict"
COMPILED_STATE_DICT = "compiled_state_dict"
# - safetensors_file: safetensors.torch.save_file(model.state_dict())
# - lightning_style: torch.save({"state_dict", "epoch", "global_step"}) as a .ckpt
SAFETENSORS_FILE = "safetensors_file"
LIGHTNING_STYLE = "lightning_style"

CHECKPOINT_FILE = {
    SAVE_PRETRAINED: "model.safetensors",
    TRAINING_CHECKPOINT: "checkpoint.pt",
    STATE_DICT: "model.pt",
    COMPILED_STATE_DICT: "model.pt",
    SAFETENSORS_FILE: "model.safetensors",
    LIGHTNING_STYLE: "last.ckpt",
}


@dataclass(frozen=True)
class ZooModel:
    name: str
    summary: str
    save: str
    args: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    outputs: list[str]
    # text models: realistic verification data (right-padded masks, ids within the vocab)
    text: dict[str, Any] | None = None
    # models with batch norm: a few train-mode passes so running statistics are not 0/1
    warm_batch_norm: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def module(self) -> str:
        return f"modeling_{self.name}"

    @property
    def checkpoint(self) -> str:
        return CHECKPOINT_FILE[self.save]

    @property
    def hf(self) -> bool:
        return self.save == SAVE_PRETRAINED


# text inputs: batch 4 x 16 tokens, the shape of the verification data (text_samples), so
# that static-shape artifacts (TFLite) can be checked on it too
def _ids(vocab: int, batch_seq: str = "sequence") -> dict[str, Any]:
    return {
        "shape": [4, 16],
        "dtype": "int64",
        "dynamic": {0: "batch", 1: batch_seq},
        "range": [0, vocab - 1],
    }


MASK = {"shape": [4, 16], "dtype": "int64", "dynamic": {0: "batch", 1: "sequence"}, "range": [0, 1]}


def _image(lo: float, hi: float, size: int = 32) -> dict[str, Any]:
    return {
        "shape": [1, 3, size, size],
        "dtype": "float32",
        "dynamic": {0: "batch"},
        "range": [lo, hi],
    }


V = 128  # vocabulary of every text model

MODELS: list[ZooModel] = [
    ZooModel(
        "bert",
        "BERT, text classification (BertForSequenceClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=3,
            pad_token_id=0,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 0, "first_real": 1},
    ),
    ZooModel(
        "distilbert",
        "DistilBERT, text classification (DistilBertForSequenceClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=64,
            num_labels=3,
            pad_token_id=0,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 0, "first_real": 1},
    ),
    ZooModel(
        "roberta",
        "RoBERTa, text classification (RobertaForSequenceClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=66,
            num_labels=3,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 1, "first_real": 3},
    ),
    ZooModel(
        "gpt2",
        "GPT-2, causal LM with the LM head tied to the embedding (GPT2LMHeadModel)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=V - 1,
            eos_token_id=V - 1,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": V - 1, "first_real": 0},
        notes=["lm_head.weight is tied to transformer.wte.weight and not in model.safetensors"],
    ),
    ZooModel(
        "llama",
        "Llama, causal LM: RoPE, RMSNorm, SwiGLU, grouped-query attention (LlamaForCausalLM)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 0, "first_real": 3},
    ),
    ZooModel(
        "t5",
        "T5, encoder-decoder LM, one teacher-forced pass (T5ForConditionalGeneration)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
            tie_word_embeddings=True,
        ),
        {
            "input_ids": _ids(V),
            "attention_mask": MASK,
            "decoder_input_ids": {
                "shape": [4, 8],
                "dtype": "int64",
                "dynamic": {0: "batch", 1: "decoder_sequence"},
                "range": [0, V - 1],
            },
        },
        ["logits"],
        text={
            "pad": 0,
            "first_real": 2,
            "decoder": {"name": "decoder_input_ids", "start": 0},
        },
        notes=[
            "shared.weight is tied to encoder/decoder embed_tokens and lm_head; "
            "model.safetensors holds it once"
        ],
    ),
    ZooModel(
        "vit",
        "ViT, image classification (ViTForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            image_size=32,
            patch_size=8,
            num_channels=3,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=5,
        ),
        {"pixel_values": _image(-1.0, 1.0)},  # ViT's processor: mean 0.5, std 0.5
        ["logits"],
    ),
    ZooModel(
        "convnext",
        "ConvNeXt, image classification (ConvNextForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            num_channels=3,
            patch_size=4,
            num_stages=2,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            image_size=32,
            num_labels=5,
        ),
        {"pixel_values": _image(-2.12, 2.64)},  # ImageNet mean/std normalisation
        ["logits"],
    ),
    ZooModel(
        "resnet",
        "ResNet, image classification with batch norm (ResNetForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            num_channels=3,
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            layer_type="basic",
            num_labels=5,
        ),
        {"pixel_values": _image(-2.12, 2.64)},
        ["logits"],
        warm_batch_norm=True,
    ),
    ZooModel(
        "clip_vision",
        "CLIP vision tower with projection, image embeddings (CLIPVisionModelWithProjection)",
        SAVE_PRETRAINED,
        dict(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            projection_dim=16,
        ),
        {"pixel_values": _image(-1.79, 2.15)},  # CLIP's mean/std normalisation
        ["image_embeds"],
    ),
    ZooModel(
        "wav2vec2",
        "wav2vec 2.0, CTC speech recognition on the raw waveform (Wav2Vec2ForCTC)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=[16, 16, 16],
            conv_stride=[5, 4, 2],
            conv_kernel=[10, 8, 4],
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            feat_extract_norm="group",
            pad_token_id=0,
        ),
        {
            "input_values": {
                "shape": [1, 1600],
                "dtype": "float32",
                "dynamic": {0: "batch", 1: "samples"},
                "range": [-1.0, 1.0],
            }
        },
        ["logits"],
    ),
    ZooModel(
        "whisper_encoder",
        "Whisper encoder + classification head on log-mel features (WhisperForAudioClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            num_mel_bins=16,
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=64,
            max_source_positions=16,
            max_target_positions=16,
            classifier_proj_size=16,
            num_labels=4,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        ),
        {
            "input_features": {
                "shape": [1, 16, 32],
                "dtype": "float32",
                "dynamic": {0: "batch"},
                "range": [-1.0, 1.0],
            }
        },
        ["logits"],
        notes=["the encoder takes exactly 2 x max_source_positions = 32 frames"],
    ),
    ZooModel(
        "albert",
        "ALBERT, text classification, cross-layer shared weights (AlbertForSequenceClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=3,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 0, "first_real": 4},
    ),
    ZooModel(
        "electra",
        "ELECTRA discriminator, text classification (ElectraForSequenceClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            embedding_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            num_labels=3,
            pad_token_id=0,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 0, "first_real": 1},
    ),
    ZooModel(
        "opt",
        "OPT, causal LM with the LM head tied to the embedding (OPTForCausalLM)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            hidden_size=32,
            word_embed_proj_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            ffn_dim=64,
            max_position_embeddings=64,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 1, "first_real": 3},
        notes=["lm_head.weight is tied to model.decoder.embed_tokens.weight, not in the file"],
    ),
    ZooModel(
        "bart_encoder",
        "BART encoder states from a whole saved BartModel (BartModel.get_encoder())",
        SAVE_PRETRAINED,
        dict(
            vocab_size=V,
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            max_position_embeddings=64,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_eos_token_id=2,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["last_hidden_state"],
        text={"pad": 1, "first_real": 3},
        notes=["shared.weight is tied to both embed_tokens; the decoder is saved but unused"],
    ),
    ZooModel(
        "deit",
        "DeiT, image classification with a distillation token "
        "(DeiTForImageClassificationWithTeacher)",
        SAVE_PRETRAINED,
        dict(
            image_size=32,
            patch_size=8,
            num_channels=3,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            num_labels=5,
        ),
        {"pixel_values": _image(-2.12, 2.64)},
        ["logits"],
    ),
    ZooModel(
        "swin",
        "Swin Transformer, shifted windows, image classification (SwinForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            image_size=32,
            patch_size=2,
            num_channels=3,
            embed_dim=16,
            depths=[1, 1],
            num_heads=[2, 2],
            window_size=4,
            mlp_ratio=2.0,
            num_labels=5,
        ),
        {"pixel_values": _image(-2.12, 2.64)},
        ["logits"],
    ),
    ZooModel(
        "mobilevit",
        "MobileViT, convolutions + transformers, image classification "
        "(MobileViTForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            image_size=64,
            patch_size=2,
            num_channels=3,
            hidden_sizes=[16, 24, 32],
            neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
            num_attention_heads=2,
            mlp_ratio=2.0,
            expand_ratio=2.0,
            initializer_range=0.5,  # 0.02: logits ~5e-9 (see efficientnet)
            num_labels=5,
        ),
        {"pixel_values": _image(0.0, 1.0, size=64)},  # MobileViT's processor: [0, 1], BGR
        ["logits"],
        warm_batch_norm=True,
    ),
    ZooModel(
        "regnet",
        "RegNetY, grouped convolutions + squeeze-excitation (RegNetForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            num_channels=3,
            embedding_size=16,
            hidden_sizes=[16, 32],
            depths=[1, 1],
            groups_width=8,
            layer_type="y",
            num_labels=5,
        ),
        {"pixel_values": _image(-2.12, 2.64)},
        ["logits"],
        warm_batch_norm=True,
    ),
    ZooModel(
        "efficientnet",
        "EfficientNet, depthwise MBConv + squeeze-excitation (EfficientNetForImageClassification)",
        SAVE_PRETRAINED,
        dict(
            image_size=32,
            num_channels=3,
            width_coefficient=0.25,
            depth_coefficient=0.25,
            hidden_dim=320,  # = round_filters(1280) at this width
            # with the default 0.02 the tiny net's logits are ~1e-37 (a gate that checks
            # nothing); 0.2 gives outputs of about 0.1, as a trained net's
            initializer_range=0.2,
            num_labels=5,
        ),
        {"pixel_values": _image(-2.12, 2.64)},
        ["logits"],
        warm_batch_norm=True,
    ),
    ZooModel(
        "hubert",
        "HuBERT, audio classification on the raw waveform (HubertForSequenceClassification)",
        SAVE_PRETRAINED,
        dict(
            vocab_size=16,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=[16, 16, 16],
            conv_stride=[5, 4, 2],
            conv_kernel=[10, 8, 4],
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            classifier_proj_size=16,
            num_labels=4,
            pad_token_id=0,
        ),
        {
            "input_values": {
                "shape": [1, 1600],
                "dtype": "float32",
                "dynamic": {0: "batch", 1: "samples"},
                "range": [-1.0, 1.0],
            }
        },
        ["logits"],
    ),
    ZooModel(
        "torch_transformer",
        "torch nn.TransformerEncoder text classifier, saved as a training checkpoint",
        TRAINING_CHECKPOINT,
        dict(
            vocab_size=V,
            d_model=32,
            nhead=4,
            num_layers=2,
            dim_feedforward=64,
            max_len=64,
            num_labels=3,
        ),
        {"input_ids": _ids(V), "attention_mask": MASK},
        ["logits"],
        text={"pad": 0, "first_real": 1},
        notes=["weights are under model_state_dict; optimizer state beside them"],
    ),
    ZooModel(
        "torch_lstm",
        "torch nn.LSTM sequence classifier over feature frames, plain state_dict",
        STATE_DICT,
        dict(n_features=8, hidden=32, num_layers=2, num_classes=4),
        {
            "features": {
                "shape": [2, 20, 8],
                "dtype": "float32",
                "dynamic": {0: "batch", 1: "time"},
                "range": [-1.0, 1.0],
            }
        },
        ["logits"],
    ),
    ZooModel(
        "torch_kws",
        "torch Conv1d + BatchNorm keyword spotter, state_dict of a torch.compile'd module",
        COMPILED_STATE_DICT,
        dict(n_mfcc=10, channels=32, num_keywords=6),
        {
            "mfcc": {
                "shape": [1, 10, 49],
                "dtype": "float32",
                "dynamic": {0: "batch"},
                "range": [-1.0, 1.0],
            }
        },
        ["logits"],
        warm_batch_norm=True,
        notes=["every key starts with _orig_mod. (torch.compile's wrapper)"],
    ),
    ZooModel(
        "torch_gru",
        "torch bidirectional nn.GRU frame tagger, state_dict in a safetensors file",
        SAFETENSORS_FILE,
        dict(n_features=8, hidden=16, num_tags=5),
        {
            "features": {
                "shape": [2, 20, 8],
                "dtype": "float32",
                "dynamic": {0: "batch", 1: "time"},
                "range": [-1.0, 1.0],
            }
        },
        ["logits"],
    ),
    ZooModel(
        "torch_decoder",
        "torch nn.TransformerDecoder caption decoder (causal self-attention + cross-attention)",
        LIGHTNING_STYLE,
        dict(vocab_size=V, d_model=32, nhead=4, num_layers=2, dim_feedforward=64, max_len=64),
        {
            "input_ids": {
                "shape": [2, 12],
                "dtype": "int64",
                "dynamic": {0: "batch", 1: "sequence"},
                "range": [0, V - 1],
            },
            "memory": {
                "shape": [2, 10, 32],
                "dtype": "float32",
                "dynamic": {0: "batch", 1: "frames"},
                "range": [-1.0, 1.0],
            },
        },
        ["logits"],
        notes=['a Lightning-style {"state_dict", "epoch", "global_step"} .ckpt'],
    ),
]

BY_NAME = {m.name: m for m in MODELS}


def factory_file(model: ZooModel, root: Path = ZOO_DIR) -> Path:
    return root / model.name / f"{model.module}.py"


def load_factory(model: ZooModel, root: Path = ZOO_DIR) -> ModuleType:
    """Import ``zoo/<name>/modeling_<name>.py`` (under a zoo-private module name)."""
    path = factory_file(model, root)
    name = f"_zoo_{model.name}_{zlib.crc32(str(path).encode()):08x}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def text_samples(model: ZooModel, seed: int = SEED) -> dict[str, np.ndarray]:
    """Verification inputs as a tokenizer gives them, at the declared shapes: ids within the
    vocabulary, right padding with the model's pad id, at least one real token per row
    (lengths 16, 11, 5, 1). modelbuild adds the first row alone as a batch of one."""
    assert model.text is not None
    rng = np.random.default_rng(seed)
    vocab = model.args["vocab_size"]
    batch, seq = model.inputs["input_ids"]["shape"]
    lengths = [max(1, round(seq * f)) for f in (1.0, 0.7, 0.3, 0.0)][:batch]
    ids = np.full((batch, seq), model.text["pad"], dtype=np.int64)
    mask = np.zeros((batch, seq), dtype=np.int64)
    for row, n in enumerate(lengths):
        ids[row, :n] = rng.integers(model.text["first_real"], vocab, size=n)
        mask[row, :n] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    dec = model.text.get("decoder")
    if dec:  # teacher forcing: the start token, then target tokens (no padding)
        shape = model.inputs[dec["name"]]["shape"]
        d = rng.integers(model.text["first_real"], vocab, size=shape)
        d[:, 0] = dec["start"]
        out[dec["name"]] = d.astype(np.int64)
    return out
