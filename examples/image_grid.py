"""Write a batch of grey images as one PNG grid, and score generated digits with a classifier.

The generative examples import it as a sibling module. PNGs are written with Pillow
(pip install 'phalanx[examples]').
"""
import numpy as np


def save_grid(path, images, columns, scale=4, gap=1):
    """Save `images` (N, H, W) or (N, 1, H, W), values in [0, 1], as a PNG grid of `columns`
    columns, each pixel drawn as a `scale` x `scale` square, `gap` dark pixels between."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError("writing PNGs needs Pillow: pip install 'phalanx[examples]' "
                          "(or pip install pillow)") from e
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 4:
        images = images[:, 0]
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = np.zeros((rows * (h + gap) + gap, columns * (w + gap) + gap), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = gap + r * (h + gap), gap + c * (w + gap)
        grid[top:top + h, left:left + w] = image
    pixels = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    pixels = pixels.repeat(scale, 0).repeat(scale, 1)
    Image.fromarray(pixels, mode="L").save(path)


def digit_classifier(images, labels):
    """A logistic-regression classifier of 8x8 digits (pixel values in [0, 1]) fitted with
    scikit-learn, to judge generated digits by."""
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(max_iter=2000, C=0.5).fit(images.reshape(len(images), -1), labels)


def digit_score(classifier, images):
    """(confidence, classes, score) of generated `images` (N, 8, 8) in [0, 1]: the classifier's
    mean top probability, how many of the 10 classes are someone's top choice, and the
    "inception score" exp(E_x KL(p(y|x) || p(y))), which is high (10 at most) when every image
    is clearly one digit and all digits are equally common."""
    probs = classifier.predict_proba(np.asarray(images).reshape(len(images), -1))
    marginal = probs.mean(0, keepdims=True)
    kl = (probs * (np.log(probs + 1e-12) - np.log(marginal + 1e-12))).sum(1).mean()
    return float(probs.max(1).mean()), len(set(probs.argmax(1))), float(np.exp(kl))
