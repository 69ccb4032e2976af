"""Small equinox models (image, recurrent, 1-D) and bundled datasets for network problems
(`sdelens.network_problem`)."""

from ._data import (
    DATASETS as DATASETS,
    QUICK_SYNTHETIC as QUICK_SYNTHETIC,
    QUICK_TEXT as QUICK_TEXT,
    Dataset as Dataset,
    load_dataset as load_dataset,
    load_npz as load_npz,
)
from ._mnist1d import load_mnist1d as load_mnist1d
from ._models import (
    MLP as MLP,
    MODELS as MODELS,
    LeNet as LeNet,
    ResNet as ResNet,
    Transformer as Transformer,
    count_params as count_params,
    make_model as make_model,
)
from ._recurrent import (
    CELLS as CELLS,
    CNN1D as CNN1D,
    RecurrentClassifier as RecurrentClassifier,
    RecurrentLM as RecurrentLM,
)
from ._text import (
    SyntheticSource as SyntheticSource,
    decode as decode,
    load_synthetic as load_synthetic,
    load_text as load_text,
    python_docs_text as python_docs_text,
)
