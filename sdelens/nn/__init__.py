"""Small equinox models and bundled datasets for network problems (`sdelens.network_problem`)."""

from ._data import (
    DATASETS as DATASETS,
    Dataset as Dataset,
    load_dataset as load_dataset,
    load_npz as load_npz,
)
from ._models import (
    MLP as MLP,
    MODELS as MODELS,
    LeNet as LeNet,
    ResNet as ResNet,
    Transformer as Transformer,
    count_params as count_params,
    make_model as make_model,
)
