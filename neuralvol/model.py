"""The coordinate network: an input encoding feeding a small ReLU MLP with a linear output."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .encodings import encoding_config_from_dict, make_encoding
from .workspace import scratch
from .kernels import mlp as mlp_kernel


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network: encoding plus MLP shape."""

    encoding: object  # any registered encoding config (see neuralvol.encodings)
    mlp_width: int = 64
    mlp_hidden_layers: int = 2
    # components of a vector / multi-component field: one network with this many linear
    # outputs (benchmarks/vector_design.py: at equal parameters it beat one network per
    # component by 1.2-1.9 dB per component and 2 dB in magnitude, and fits 3x faster)
    n_outputs: int = 1

    def mlp_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of every weight matrix, output layer last."""
        shapes = []
        fan_in = self.encoding.n_output_dims
        for _ in range(self.mlp_hidden_layers):
            shapes.append((self.mlp_width, fan_in))
            fan_in = self.mlp_width
        shapes.append((self.n_outputs, fan_in))
        return shapes

    @property
    def n_mlp_params(self) -> int:
        # + the output biases.
        return sum(o * i for o, i in self.mlp_shapes()) + self.n_outputs

    @property
    def n_params(self) -> int:
        return self.encoding.n_params + self.n_mlp_params

    def to_dict(self) -> dict:
        network = {"type": "relu_mlp", "width": self.mlp_width,
                   "hidden_layers": self.mlp_hidden_layers, "output_bias": True}
        if self.n_outputs != 1:  # written only for multi-component fields (format version 4)
            network["outputs"] = self.n_outputs
        return {"encoding": self.encoding.to_dict(), "network": network}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        net = d["network"]
        return cls(encoding=encoding_config_from_dict(d["encoding"]),
                   mlp_width=int(net["width"]), mlp_hidden_layers=int(net["hidden_layers"]),
                   n_outputs=_positive_int(net.get("outputs", 1), "outputs"))


def _positive_int(value, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_OUTPUTS:
        raise ValueError(f"network {what} must be an integer 1..{MAX_OUTPUTS}, got {value!r}")
    return value


#: most components a field may have (VTK's own arrays rarely exceed 9: a 3x3 tensor)
MAX_OUTPUTS = 64


class NeuralField(torch.nn.Module):
    """f(x, y, z) -> normalised value, for coordinates in [0, 1]^3: shape ``[K]`` for one
    output, ``[K, C]`` for ``config.n_outputs = C`` components."""

    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__()
        self.config = config
        generator = torch.Generator().manual_seed(int(seed))
        self.encoding = make_encoding(config.encoding, generator=generator)
        layers = []
        for out_dim, in_dim in config.mlp_shapes():
            w = torch.empty(out_dim, in_dim)
            # Kaiming-uniform for ReLU, seeded from our own generator for determinism.
            bound = (6.0 / in_dim) ** 0.5
            w.uniform_(-bound, bound, generator=generator)
            layers.append(torch.nn.Parameter(w))
        self.weights = torch.nn.ParameterList(layers)
        self.output_bias = torch.nn.Parameter(torch.zeros(config.n_outputs))
        self.register_buffer("_feature_major", self.encoding.feature_major_order(), persistent=False)

    def mlp(self, features: torch.Tensor, dtype: torch.dtype = torch.float32,
            workspace: dict | None = None) -> torch.Tensor:
        """MLP on feature-major encodings ``[F * L, K]`` (batch innermost) -> ``[K]``.

        The first layer's columns are stored level-major, as tiny-cuda-nn orders encoded
        features; they are permuted here so the encoding's output needs no transpose.
        Without ``workspace`` (fitting, scattered points, the per-voxel reference decode) the
        layers run feature-major in fp32, the arithmetic the pinned files were made with.
        With ``workspace`` (a dict the caller keeps across calls; inference only) or a
        ``dtype`` other than fp32 they run batch-major (see :meth:`_mlp_batch_major`).
        """
        if workspace is not None or dtype != torch.float32:
            return self._mlp_batch_major(features, dtype, {} if workspace is None else workspace)
        h, output_layer = self._hidden(features)
        h = output_layer @ h
        if self.config.n_outputs == 1:
            return h.squeeze(0) + self.output_bias
        return h.t() + self.output_bias

    def output_layer_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the output layer combines linearly at points ``x``: ``[I, K]``, row ``i`` the
        input that the output layer's stored column ``i`` multiplies (the last hidden layer's
        activations; the encoded features for a network without hidden layers)."""
        h, _ = self._hidden(self.encoding.encode_feature_major(x))
        if len(self.weights) == 1:  # stored column self._feature_major[j] multiplies row j
            stored = torch.empty_like(h)
            stored[self._feature_major] = h
            return stored
        return h

    def _hidden(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The feature-major fp32 hidden layers: the output layer's input ``[I, K]`` and that
        layer's weights, columns in the same order (the first layer's permuted, as in
        :meth:`_kernel_weights`)."""
        weights = self._kernel_weights()
        h = features
        for w in weights[:-1]:
            h = torch.relu(w @ h)
        return h, weights[-1]

    def _kernel_weights(self) -> list[torch.Tensor]:
        """The MLP's weights with the first layer's columns in the encoding's feature-major order."""
        return [self.weights[0][:, self._feature_major], *self.weights[1:]]

    def mlp_from_planes(self, planes: list, shape: tuple[int, int, int], dtype: torch.dtype) -> torch.Tensor:
        """:meth:`mlp` of a grid slab's features, fed from the encoding's lattice planes
        (:func:`neuralvol.kernels.mlp.grid_forward`; the caller checked ``grid_usable``)."""
        out = mlp_kernel.grid_forward(self._kernel_weights(), self.output_bias, planes, shape, dtype)
        return out.squeeze(1) if self.config.n_outputs == 1 else out

    def _mlp_batch_major(self, features: torch.Tensor, dtype: torch.dtype, workspace: dict) -> torch.Tensor:
        """:meth:`mlp` with the batch as GEMM rows, hidden layers in ``dtype``, reusing buffers.

        oneDNN's GEMMs are fastest with the batch as rows, and the transposed view of the
        feature-major input needs no copy (fp32; bf16 costs one cast). Measured on this
        2-core EPYC (32 -> 64 -> 64 -> 1, 2 threads): fp32 46-49 GMAC/s batch-major against
        16-20 feature-major at 2^13 rows, 24-39 against 19 at 2^15; bf16 (AVX512-BF16)
        90-123 GMAC/s at 2^14-2^15. The hidden activations ping-pong between two workspace
        buffers (see :func:`scratch`). On CPUs with AVX-512 the fused kernel of
        :mod:`neuralvol.kernels.mlp` runs every layer instead, tile by tile.
        """
        if mlp_kernel.usable(features, dtype):
            out = mlp_kernel.forward(self._kernel_weights(), self.output_bias, features, dtype)
            return out.squeeze(1) if self.config.n_outputs == 1 else out
        h = features.t()
        if dtype != torch.float32:
            h = h.to(dtype)
        for i, w in enumerate(self.weights[:-1]):
            if i == 0:
                w = w[:, self._feature_major]
            out = scratch(workspace, ("mlp", i % 2), (h.shape[0], w.shape[0]), h)
            h = torch.relu_(torch.matmul(h, w.t().to(dtype), out=out))
        # fp32 output layer: a bf16 output would round values to 8 significant bits (~48 dB)
        out = torch.nn.functional.linear(h.float(), self.weights[-1])
        return (out.squeeze(1) if self.config.n_outputs == 1 else out) + self.output_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.encoding.encode_feature_major(x))

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors a container stores, by section name: the encoding's table and the
        MLP's weights (layer by layer, row-major, then the output bias) as one flat vector."""
        mlp = torch.cat([w.detach().reshape(-1) for w in self.weights] + [self.output_bias.detach()])
        return {"encoding": self.encoding.table.detach(), "mlp": mlp}

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"encoding": tuple(self.encoding.table.shape), "mlp": (self.config.n_mlp_params,)}

    @torch.no_grad()
    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.encoding.table.copy_(tensors["encoding"].to(torch.float32))
        flat = tensors["mlp"].to(torch.float32)
        start = 0
        for w in self.weights:
            w.copy_(flat[start:start + w.numel()].reshape(w.shape))
            start += w.numel()
        self.output_bias.copy_(flat[start:start + self.output_bias.numel()])
