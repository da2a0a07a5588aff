"""The image processor saved next to SEP and UperNet weights, so ``AutoImageProcessor`` and
``pipeline("image-segmentation")`` feed the model exactly what training and evaluation fed it.

Our transform (``data.to_tensor``) is ``/255`` then the model's mean/std; that is transformers'
``SegformerImageProcessor`` (the class transformers maps UperNet to) with resizing off: remote-sensing
models are tied to the ground sampling distance they saw, and our evaluation never resizes (it takes
crops at the image's own resolution). Labels are never reduced: 0 is a class, 255 is ignored.
"""

from __future__ import annotations


def image_processor(mean, std):
    """A processor equal to ``to_tensor(image / 255, mean, std)`` on an image of any size."""
    # The PIL backend needs no torchvision; it saves as "SegformerImageProcessor", which loads
    # with either backend.
    try:
        from transformers import SegformerImageProcessorPil as processor_class
    except ImportError:  # transformers without the PIL/torchvision backend split
        from transformers import SegformerImageProcessor as processor_class

    return processor_class(do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                           image_mean=list(mean), image_std=list(std), do_reduce_labels=False)
