"""Registry entries of the built-in backends; importing this module imports no framework."""

from cvae_bench.backends.registry import BackendInfo

TORCH = BackendInfo(
    name="torch",
    target="cvae_bench.backends.torch_backend:TorchBackend",
    requires=("torch",),
    install_hint="pip install torch==2.13.0 'cvae-bench[torch]'",
    devices=("cpu", "cuda"),
    modes=("eager", "compiled"),
    description="native PyTorch (modes: eager, compiled)",
)

KERAS_TORCH = BackendInfo(
    name="keras-torch",
    target="cvae_bench.backends.keras_backend:KerasTorchBackend",
    requires=("keras", "torch"),
    install_hint="pip install torch==2.13.0 'cvae-bench[torch,keras]'",
    env={"KERAS_BACKEND": "torch"},
    devices=("cpu", "cuda"),
    modes=("eager", "jit"),
    description="Keras 3 functional model on torch",
)

KERAS_TENSORFLOW = BackendInfo(
    name="keras-tensorflow",
    target="cvae_bench.backends.keras_backend:KerasTensorflowBackend",
    requires=("keras", "tensorflow"),
    install_hint="pip install 'cvae-bench[tensorflow]'",
    env={"KERAS_BACKEND": "tensorflow"},
    devices=("cpu", "cuda"),
    modes=("jit", "graph", "eager"),
    description="Keras 3 functional model on tensorflow",
)

KERAS_JAX = BackendInfo(
    name="keras-jax",
    target="cvae_bench.backends.keras_backend:KerasJaxBackend",
    requires=("keras", "jax"),
    install_hint="pip install 'cvae-bench[jax]'",
    env={"KERAS_BACKEND": "jax"},
    devices=("cpu", "cuda"),
    modes=("jit", "eager"),
    description="Keras 3 functional model on jax",
)
