"""The networks: a MobileNetV2-style CNN from scratch, or a frozen local MobileNetV2 base with a new head;
and the calibrated output layers appended before saving."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

MOBILENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


# Keras symbolic tensors carry no type information (keras is untyped here): they are Any.
def _inverted_residual(x: Any, expand: int, out: int, stride: int) -> Any:
    inputs, channels = x, x.shape[-1]
    x = _conv_bn(x, channels * expand, 1)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))
    x = layers.BatchNormalization(momentum=0.9)(layers.Conv2D(out, 1, use_bias=False)(x))
    return layers.Add()([inputs, x]) if stride == 1 and channels == out else x


def _conv_bn(x: Any, filters: int, kernel: int, stride: int = 1) -> Any:
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False)(x)
    # momentum 0.9, not Keras' 0.99 (MobileNetV2 uses 0.999): a few hundred steps must settle the stats
    return layers.ReLU(6.0)(layers.BatchNormalization(momentum=0.9)(x))


def build_scratch(image_size: int, outputs: int, *, normalise_polarity: bool = False) -> keras.Model:
    """MobileNetV2-style: inverted residual blocks, about 90k parameters; outputs logits."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = dark_on_light(inputs, image_size) if normalise_polarity else inputs
    x = layers.Rescaling(1 / 127.5, offset=-1)(x)  # 0..255 in, like mobilenet_v2.preprocess_input
    x = _conv_bn(x, 16, 3, stride=2)
    for expand, out, stride in ((3, 24, 2), (3, 24, 1), (4, 32, 2), (4, 32, 1), (4, 64, 2), (4, 64, 1)):
        x = _inverted_residual(x, expand, out, stride)
    x = layers.GlobalAveragePooling2D()(_conv_bn(x, 128, 1))
    logits = layers.Dense(outputs, name="logits")(layers.Dropout(0.2)(x))
    return keras.Model(inputs, logits, name="image_classifier")


def dark_on_light(x: Any, image_size: int, gain: float = 1.0) -> Any:
    """Invert a picture whose centre is brighter than the whole (light ink on a dark ground), in built-in layers.

    For marks on a plain ground: the centre (all but a ring of 1/8 of the side) holds more ink than the
    whole picture does, so "centre brighter than the whole" means bright ink. A linear lighting ramp
    cancels out (the crop is symmetric), and a picture near the boundary gets a soft mix, not a jump.
    ``gain`` per grey level: the held-out renderings differ by 4 to 50 grey levels, all on the right side.
    (A steeper 4, with more background pictures, was tried: non-digit shapes fell to 98 % unknown.)
    """
    crop = image_size // 8
    whole = layers.GlobalAveragePooling2D()(x)
    centre = layers.GlobalAveragePooling2D()(layers.Cropping2D(crop)(x))
    bright_ink = layers.Dense(1, activation="sigmoid", trainable=False, name="bright_ink")
    weight = bright_ink(layers.Concatenate()([centre, whole]))  # sigmoid(gain * (centre grey - whole grey))
    kernel = np.array([[gain / 3]] * 3 + [[-gain / 3]] * 3, dtype=np.float32)
    bright_ink.set_weights([kernel, np.zeros(1, dtype=np.float32)])
    flipped = layers.Rescaling(-2.0, offset=255.0)(x)  # 255 - 2x: x + that = the inverse, 255 - x
    return layers.Add(name="dark_on_light")([x, layers.Multiply()([layers.Reshape((1, 1, 1))(weight), flipped])])


def build_transfer(image_size: int, outputs: int, weights: Path) -> keras.Model:
    """A frozen ImageNet MobileNetV2 (``include_top=False`` weights from a local file) + a new head."""
    base = _mobilenet_from_file(image_size, Path(weights))
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.GlobalAveragePooling2D()(base(x, training=False))  # BN stays in inference mode
    logits = layers.Dense(outputs, name="logits")(layers.Dropout(0.2)(x))
    return keras.Model(inputs, logits, name="image_classifier")


def _mobilenet_from_file(image_size: int, weights: Path) -> keras.Model:
    """The file does not say its width multiplier: try the one in its name first, then each in turn."""
    alphas = sorted(MOBILENET_ALPHAS, key=lambda a: f"_{a}_" not in weights.name)
    errors = []
    for alpha in alphas:
        try:
            with warnings.catch_warnings():
                # Keras only warns when part of a file does not match and keeps random weights there
                warnings.simplefilter("error", UserWarning)
                return keras.applications.MobileNetV2(
                    input_shape=(image_size, image_size, 3), alpha=alpha, include_top=False, weights=str(weights)
                )
        except (ValueError, UserWarning) as exc:  # shapes or names do not match: another alpha
            errors.append(f"alpha={alpha}: {str(exc).splitlines()[0]}")
    raise ValueError(f"{weights} is not a MobileNetV2 include_top=False weights file ({'; '.join(errors)})")


def export_model(model: keras.Model, temperature: float, n_labels: int) -> keras.Model:
    """Append temperature, softmax and background folding as built-in layers (safe_mode loads them)."""
    scaled = layers.Rescaling(1 / temperature, name="temperature")(model.output)
    probabilities = layers.Softmax(name="softmax")(scaled)
    fold = layers.Dense(n_labels, use_bias=False, trainable=False, name="fold_background")
    output = fold(probabilities)
    # identity for the real labels; the background row spreads its mass evenly over them
    fold.set_weights([np.vstack([np.eye(n_labels), np.full((1, n_labels), 1 / n_labels)]).astype(np.float32)])
    return keras.Model(model.inputs, output, name=model.name)
