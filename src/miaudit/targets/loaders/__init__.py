"""Load a user's model from a file as a counting black box, without running code from the file.

Accepted files (by suffix):

``.skops``
    A scikit-learn estimator saved with ``skops.io.dump``; types outside skops' trusted set are refused
    unless named in ``trusted`` (``--trust TYPE``).
``.onnx``
    Run by onnxruntime; the input's name, shape and batch dimension (dynamic, or fixed: then queries go in
    chunks of it) come from the model.
``.pt2``
    A ``torch.export.save`` archive. The archive is checked first: one with pickled parts (legacy weights,
    custom objects, pickled example inputs) is refused, because ``torch.export.load`` would unpickle them.
``.safetensors``, ``.pt``, ``.pth``
    Weights only (a state dict; ``.pt`` files are read with ``torch.load(weights_only=True)``), plus
    ``factory="package.module:callable"``, a function of the user's own code that builds the untrained module.
``.pkl``, ``.pickle``, ``.joblib`` (and ``.pt`` files holding whole pickled modules)
    Refused: unpickling runs arbitrary code from the file. ``allow_unsafe_pickle=True`` loads them anyway
    (only for files one made oneself).

Records are flat, of shape (n_samples, n_features); torch and ONNX models get them reshaped to ``input_shape``.
"""

from miaudit.targets.loaders.files import MODEL_SUFFIXES, PICKLE_SUFFIXES, load_model
from miaudit.targets.loaders.objects import LoadedModel, import_factory, wrap_model

__all__ = ["MODEL_SUFFIXES", "PICKLE_SUFFIXES", "LoadedModel", "import_factory", "load_model", "wrap_model"]
