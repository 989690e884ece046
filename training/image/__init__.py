"""Image classifier: a small inverted-residual CNN that says "unknown" for what it was not trained on.

``python -m training.image --help`` trains one (``training.image.__main__``). Without ``--data``
it trains the shipped ``digits`` model on scikit-learn's bundled 8x8 digits, rendered as RGB
pictures (varied ink, paper, size, position, blur, noise, JPEG). With ``--data DIR`` it trains on
``DIR/<class>/*.jpg|jpeg|png``; ``--weights`` names a local ImageNet MobileNetV2
``include_top=False`` weights file to use as a frozen base (transfer learning).

"Unknown": the network has one extra hidden *background* class, trained on synthetic
out-of-distribution pictures (noise, solid colours, gradients, shapes, textures, photo crops).
The saved model ends in fixed layers that divide the logits by a temperature fitted on a
validation split, take the softmax and spread the background probability evenly over the real
labels, so its output is a calibrated distribution over ``labels`` only: an out-of-distribution
picture comes out near-uniform, below the manifest's threshold, and the worker needs no extra logic.
Every picture, synthetic or from disk, goes through ``shared.images.preprocess_image``, as uploads do.

The digits model is also measured on ``training.digits_eval``'s rendering matrix (the last 200
sklearn digits, never trained on, posted in the renderings users send and read by the worker's own
code); the result goes into the manifest's metrics and the model card.

Modules: ``digit_pictures`` (an 8x8 digit drawn as a picture), ``background`` (pictures that are
no class), ``data`` (the splits, rendered; folder loading), ``network`` (the CNNs and the exported
calibrated head), ``fit`` (training, temperature, metrics), ``card`` (the model card), ``train``
(all of it, writing a version).
"""

# Here, not in ``train``: ``python -m training`` reads it without importing Keras.
# what ``python -m training`` ships; v1 (before the rendering matrix) and v2 (fixed threshold) are kept as they were
DIGITS_VERSION = 3
