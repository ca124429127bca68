"""GPU throughput of advlab's attacks at several batch sizes (device check, not committed)."""
import json, sys, time
import torch
from advlab.experiments.planning import measure_throughput

out = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "rows": []}
for model, attack, batches in [("resnet18", "ifgsm", [256, 1024, 4096]), ("small_cnn", "ifgsm", [256, 4096]),
                               ("lenet5", "cw", [256, 2048]), ("lenet5", "lbfgs", [256])]:
    for b in batches:
        t = time.perf_counter()
        rate = measure_throughput(model, (1, 28, 28), "cuda", batch=b, attack=attack)
        out["rows"].append({"model": model, "attack": attack, "batch": b, "device": "cuda",
                            "image_steps_per_second": rate, "seconds": time.perf_counter() - t})
        print(out["rows"][-1], flush=True)
torch.set_num_threads(1)
for model in ["resnet18", "small_cnn"]:
    rate = measure_throughput(model, (1, 28, 28), "cpu", batch=256, attack="ifgsm")
    out["rows"].append({"model": model, "attack": "ifgsm", "batch": 256, "device": "cpu, 1 thread",
                        "image_steps_per_second": rate})
    print(out["rows"][-1], flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
