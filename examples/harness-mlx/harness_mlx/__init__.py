"""An example matmul-harness plugin: MLX's own autodiff under the harness's checks."""
