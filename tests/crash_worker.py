"""A process that keeps changing a store until it is killed (used by test_crash)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tiny import softmax_classifier  # noqa: E402

from portal import Portal  # noqa: E402
from portal.ingest.modelinfo import describe_model  # noqa: E402


def main(home: str, seed: int) -> None:
    portal = Portal.open(home)
    rng = np.random.default_rng(seed)
    print("ready", flush=True)
    step = 0
    while True:
        step += 1
        action = rng.integers(0, 4)
        versions = [v.version for v in portal.get_model("work").versions] if "work" in portal.registry.model_names() else []
        if action == 0 or not versions:
            portal.register(softmax_classifier(seed=int(rng.integers(1 << 30))).SerializeToString(), "work", filename="w.onnx")
        elif action == 1:
            portal.set_alias(f"work:{rng.choice(versions)}", "prod")
        elif action == 2 and len(versions) > 1:
            target = int(rng.choice(versions))
            try:
                portal.delete(f"work:{target}")
            except Exception:  # noqa: BLE001 - alias or variant in the way: a refusal, fine
                pass
        else:
            parent = portal.get(f"work:{max(versions)}")
            model = softmax_classifier(seed=int(rng.integers(1 << 30)))
            blob = portal.store.put_bytes(model.SerializeToString())
            portal.registry.add_version("work", blob_sha=blob.sha256, size_bytes=blob.size, source_format="onnx",
                                        info=describe_model(model), parent=parent.ref, method="prune",
                                        method_params={"sparsity": 0.5})
            portal.invalidate()
        print(f"step {step}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
