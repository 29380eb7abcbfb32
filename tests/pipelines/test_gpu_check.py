"""`tradecast gpu-check` on a machine without CUDA (the plan, nothing run, nothing written) and the ONNX Runtime
execution-provider choice of serving.runtime (CPU unless asked; an unknown name is a clear ValueError)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from tests.conftest import ROOT

RESULTS = ROOT / "benchmarks" / "results"


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


def _has_cuda_ep() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


def _snapshot() -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(RESULTS)): (p.stat().st_size, p.stat().st_mtime_ns) for p in RESULTS.rglob("*")}


@pytest.fixture
def mean_onnx(tmp_path):
    """A real exported window-mean graph: (B, 8) -> (B, 4, 1), each step the window's mean."""
    from serving.export import export_onnx
    from serving.graph import BaselineGraph

    return export_onnx(BaselineGraph("window_mean", 4, 8, 2).eval(), tmp_path / "mean.onnx")


@pytest.mark.skipif(not _no_cuda(), reason="on a CUDA machine gpu-check runs the benchmarks")
def test_gpu_check_without_cuda_prints_the_plan_and_writes_nothing(monkeypatch):
    from pipelines.cli.gpu_check import gpu_check

    monkeypatch.chdir(ROOT)
    before = _snapshot()
    result = CliRunner().invoke(gpu_check, [])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "torch.cuda.is_available() is False on this machine: nothing is run" in out
    serve = "serve-cuda" if _has_cuda_ep() else "serve-cuda-ort-cpu"
    lines = out.splitlines()
    for n, (key, name) in enumerate([("train", "gpu-train-cuda"), ("bench", "full-cuda"), ("serve", serve)], 1):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {n}. {key}: "))
        assert lines[at + 2] == f"     writes: benchmarks/results/{name}.json, benchmarks/results/{name}.md", out
    assert not any(line.startswith("  4. ") for line in lines)
    assert f"{sys.executable} -m pipelines.cli bench --profile full --out benchmarks/results" in out
    assert "-m pipelines.cli.gpu_check --train-smoke --train-steps 200 --out benchmarks/results" in out
    assert f"-m pipelines.cli bench-serve --out benchmarks/results --name {serve}" in out
    if not _has_cuda_ep():  # the CPU build of onnxruntime: said, with what to install, and the CPU bench marked
        assert "no CUDAExecutionProvider" in out and "onnxruntime-gpu==" in out
        assert "TRADECAST_ORT_PROVIDERS=CPUExecutionProvider " in out and "(no CUDA execution provider" in out
    assert _snapshot() == before


def test_dry_run_of_one_step_as_a_module_subprocess(tmp_path):
    """`python -m pipelines.cli.gpu_check` (how step 1 is launched) with --dry-run --only: that step alone."""
    out = subprocess.run([sys.executable, "-m", "pipelines.cli.gpu_check", "--dry-run", "--only", "train",
                          "--train-steps", "50", "--out", str(tmp_path / "r")], cwd=ROOT, capture_output=True,
                         text=True, timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--dry-run: nothing is run" in out.stdout
    assert f"--train-smoke --train-steps 50 --out {tmp_path / 'r'}" in out.stdout
    assert f"writes: {tmp_path / 'r' / 'gpu-train-cuda.json'}, {tmp_path / 'r' / 'gpu-train-cuda.md'}" in out.stdout
    assert "\n  2. " not in out.stdout and "full-cuda" not in out.stdout and "serve" not in out.stdout
    assert not (tmp_path / "r").exists()


def test_gpu_check_refuses_an_unknown_provider_for_the_serve_step():
    from pipelines.cli.gpu_check import gpu_check

    result = CliRunner().invoke(gpu_check, ["--dry-run", "--ort-providers", "WarpDriveExecutionProvider"])
    assert result.exit_code == 2
    assert "unknown ONNX Runtime execution provider(s) ['WarpDriveExecutionProvider']" in result.output


def test_execute_runs_every_step_and_names_exit_codes_timeouts_and_missing_files(tmp_path, capsys):
    from pipelines.cli.gpu_check import Step, execute

    py, done = sys.executable, tmp_path / "done.txt"
    steps = [Step("ok", "writes its file", (py, "-c", f"open({str(done)!r}, 'w').write('1')"), (done,)),
             Step("exit3", "fails", (py, "-c", "raise SystemExit(3)"), ()),
             Step("nofile", "exit 0, no file", (py, "-c", "pass"), (tmp_path / "never.json",)),
             Step("slow", "past the limit", (py, "-c", "import time; time.sleep(30)"), ()),
             Step("env", "sees its environment", (py, "-c", "import os, sys; sys.exit(os.environ['GPU_CHECK_T'] != "
                                                  "'yes')"), (), {"GPU_CHECK_T": "yes"})]
    failed = execute(steps, timeout=3)
    out = capsys.readouterr().out
    assert failed == ["exit3", "nofile", "slow"]
    assert done.read_text() == "1"
    assert "[2/5] exit3: exit 3 in" in out and "FAILED (exit 3)" in out
    assert "[3/5] nofile: exit 0 in" in out and f"FAILED (exit 0 but {tmp_path / 'never.json'} missing)" in out
    assert "[4/5] slow: exit 124 in" in out and "FAILED (timed out after 3 s)" in out
    assert "[5/5] env: GPU_CHECK_T=yes " in out and "[5/5] env: exit 0 in" in out
    summary = out[out.index("gpu-check summary:"):].splitlines()[1:]
    assert [line.split()[:3] for line in summary] == [["ok", "exit", "0"], ["exit3", "exit", "3"],
                                                      ["nofile", "exit", "0"], ["slow", "exit", "124"],
                                                      ["env", "exit", "0"]]
    assert summary[0].endswith(str(done)) and 3.0 <= float(summary[3].split()[3]) < 10


def _registered() -> bool:
    from pipelines.cli import main

    return "gpu-check" in main.commands


@pytest.mark.skipif(not _registered(), reason="the registration lines are not in pipelines/cli/__init__.py yet")
def test_the_tradecast_group_has_gpu_check():
    from pipelines.cli import main
    from pipelines.cli.gpu_check import gpu_check

    assert main.commands["gpu-check"] is gpu_check


def test_available_providers_lists_cpu_in_the_preferred_order():
    import onnxruntime as ort

    from serving.runtime import available_providers

    found = available_providers()
    assert "CPUExecutionProvider" in found and found[-1] == "CPUExecutionProvider"
    assert set(found) <= {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
    assert ("CUDAExecutionProvider" in found) == ("CUDAExecutionProvider" in ort.get_available_providers())
    assert available_providers(("CPUExecutionProvider", "NoSuchExecutionProvider", "CPUExecutionProvider")) == [
        "CPUExecutionProvider"]


def test_a_default_session_runs_on_the_cpu_and_an_unknown_provider_is_a_value_error(mean_onnx, monkeypatch):
    from serving.runtime import OnnxForecaster

    monkeypatch.delenv("TRADECAST_ORT_PROVIDERS", raising=False)
    model = OnnxForecaster.from_path(mean_onnx)
    assert model.requested_providers == ["CPUExecutionProvider"]
    assert model.providers == ["CPUExecutionProvider"] and model.provider == "CPUExecutionProvider"
    windows = np.array([[1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 2, 2, 4, 4, 4, 4]], np.float32)
    np.testing.assert_allclose(model.run(windows)[..., 0], [[4.5] * 4, [3.0] * 4], rtol=1e-6)

    with pytest.raises(ValueError, match=r"unknown ONNX Runtime execution provider\(s\) \['BogusExecutionProvider'\]"):
        OnnxForecaster.from_path(mean_onnx, providers="CPUExecutionProvider, BogusExecutionProvider")
    monkeypatch.setenv("TRADECAST_ORT_PROVIDERS", "BogusExecutionProvider")
    with pytest.raises(ValueError, match=r"\$TRADECAST_ORT_PROVIDERS: unknown .*BogusExecutionProvider"):
        OnnxForecaster.from_path(mean_onnx)
    with pytest.raises(ValueError, match="no ONNX Runtime execution provider named"):
        OnnxForecaster.from_path(mean_onnx, providers=" , ")
    monkeypatch.setenv("TRADECAST_ORT_PROVIDERS", " CPUExecutionProvider ")
    assert OnnxForecaster.from_path(mean_onnx).providers == ["CPUExecutionProvider"]


@pytest.mark.skipif(_has_cuda_ep(), reason="this onnxruntime is the GPU build")
def test_cuda_on_the_cpu_build_of_onnxruntime_names_the_gpu_package(mean_onnx):
    from serving.runtime import OnnxForecaster

    with pytest.raises(ValueError, match=r"\['CUDAExecutionProvider'\] not available .*onnxruntime-gpu"):
        OnnxForecaster.from_path(mean_onnx, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


@pytest.mark.slow
def test_the_training_smoke_on_the_cpu_writes_its_document(tmp_path):
    """The smoke step's code on the CPU (accelerator cpu, 12 steps): 32-true, every step counted, both files."""
    from pipelines.cli.gpu_check import SKIP_STEPS, train_smoke

    doc = train_smoke(tmp_path, steps=SKIP_STEPS + 2, accelerator="cpu")
    saved = json.loads((tmp_path / "gpu-train-cpu.json").read_text())
    assert saved == json.loads(json.dumps(doc))
    assert saved["schema"] == "tradecast.gpu-train/1"
    assert saved["trainer"] == {"accelerator": "cpu", "devices": 1, "precision": "32-true"}
    assert saved["data"] == {"file": "data/fx/exchange_rate.txt.gz", "series": 8, "rows_per_series": 2000,
                             "freq": "B"}
    result = saved["result"]
    assert result["steps"] == 12 and result["steps_per_s_over"] == "steps 11..12"
    assert result["steps_per_s"] > 0 and result["peak_memory_allocated_bytes"] is None
    assert saved["machine"]["gpu"] is None and saved["machine"]["device"] == "cpu"
    assert "| precision | 32-true |" in (tmp_path / "gpu-train-cpu.md").read_text()
