"""The robust window scaler inside the ONNX graph equals torch's on a pegged (near-constant) window, where
neuralforecast's zero guard is a discontinuity that float32 reductions decide differently."""

import numpy as np


def test_a_window_of_values_one_ulp_apart_scales_the_same_in_onnx_and_torch(tmp_path):
    import onnxruntime as ort
    import torch

    from serving.graph import WindowScaler

    class Stats(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scaler = WindowScaler("robust")

        def forward(self, x):
            return torch.cat(self.scaler(x), dim=1)

    level = np.float32(0.211242)  # CNY per USD in 1995, pegged: the data files repeat it for years
    window = np.full((2, 30), level, np.float32)
    window[:, ::7] = np.nextafter(level, np.float32(1))
    window[1] = np.linspace(1, 2, 30)
    model, x = Stats().eval(), torch.from_numpy(window)
    torch.onnx.export(model, (x,), tmp_path / "s.onnx", input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b"}}, dynamo=False, opset_version=18)
    onnx = ort.InferenceSession(str(tmp_path / "s.onnx")).run(None, {"x": window})[0]
    with torch.no_grad():
        eager = model(x).numpy()
    assert eager[0, 1] < 1e-3  # the std guard (scale ~1e-6), not the "all equal" guard (scale 1)
    np.testing.assert_allclose(onnx, eager, rtol=1e-6)
