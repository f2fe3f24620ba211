"""Person masks of photos: MediaPipe's selfie segmenter (person with hair and clothes vs background).

The position map's confidence covers only the template head proxy, an oval: hair that reaches
past it, a beard, the shoulders are outside. Matting a photo by that oval (what refinement and
the real-photo evaluation compared against before) turns such hair into background, so fitting
fades it and a score rewards the fading. The segmenter's mask follows the person instead. It runs
on the crop itself (the model is made for head-and-shoulders images and resizes to 256², so a
128² crop is enough), in about 5 ms.

The model file ships in ``avat3r_cli/assets/mediapipe/`` (see its README).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from avat3r_cli.core.errors import Avat3rError
from avat3r_cli.io.mediapipe_assets import selfie_segmenter_path
from avat3r_cli.preprocess.face import quiet_stderr


class PersonSegmenter:
    """MediaPipe's selfie segmenter as a context manager.

    ``with PersonSegmenter() as seg: mask = seg.mask(image)``.
    """

    def __init__(self) -> None:
        self._segmenter: Any = None
        self._mp: Any = None

    def __enter__(self) -> PersonSegmenter:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the segmenter (once)."""
        if self._segmenter is not None:
            return
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise Avat3rError(f"person segmentation needs the mediapipe package ({error})") from None
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(selfie_segmenter_path())),
            output_confidence_masks=True,
            output_category_mask=False,
        )
        with quiet_stderr():
            self._segmenter = vision.ImageSegmenter.create_from_options(options)
        self._mp = mp

    def close(self) -> None:
        """Release the segmenter; explicit, because MediaPipe's ``__del__`` misbehaves at exit."""
        if self._segmenter is not None:
            self._segmenter.close()
            self._segmenter = None

    def mask(self, image: np.ndarray) -> np.ndarray:
        """``float32 [H, W]`` in 0..1: how surely each pixel of ``image`` (``uint8 [H, W, 3]`` RGB) is the person."""
        self.open()
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
        frame = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        result = self._segmenter.segment(frame)
        mask = np.asarray(result.confidence_masks[0].numpy_view(), dtype=np.float32)
        return np.clip(mask.reshape(image.shape[:2]), 0.0, 1.0)


def person_masks(images: np.ndarray) -> np.ndarray:
    """``float32 [V, 1, H, W]`` person masks of ``images`` (``uint8 [V, H, W, 3]``)."""
    with PersonSegmenter() as segmenter:
        return np.stack([segmenter.mask(image)[None] for image in images])
