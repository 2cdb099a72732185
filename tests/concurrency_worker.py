"""One process of the concurrency test: threads uploading, predicting, aliasing, deleting."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from tiny import add_model, softmax_classifier  # noqa: E402

from portal import NotFoundError, Portal, PortalError  # noqa: E402


def main(home: str, worker: int, rounds: int) -> None:
    portal = Portal.open(home)
    errors: list[str] = []
    committed: list[str] = []
    deleted: list[str] = []
    lock = threading.Lock()

    def note(kind: list[str], item: str) -> None:
        with lock:
            kind.append(item)

    def uploader(t: int) -> None:
        for i in range(rounds):
            v = add_model(portal, softmax_classifier(seed=worker * 1000 + t * 100 + i), f"w{worker}")
            note(committed, v.ref)

    def predictor(_: int) -> None:
        x = {"x": np.ones((8, 4), np.float32)}
        for _ in range(rounds * 4):
            try:
                portal.predict("shared@prod", x)
            except NotFoundError:
                pass  # a clear not-found is acceptable; anything else is not

    def aliaser(_: int) -> None:
        for i in range(rounds):
            portal.set_alias(f"shared:{1 + i % 2}", "prod")

    def deleter(_: int) -> None:
        for _ in range(rounds):
            model = f"w{worker}"
            try:
                versions = portal.get_model(model).versions
            except NotFoundError:
                continue
            if len(versions) > 1:
                try:
                    portal.delete(versions[-1].ref)
                    note(deleted, versions[-1].ref)
                except NotFoundError:
                    pass

    def guard(fn, i):
        try:
            fn(i)
        except PortalError as exc:
            errors.append(f"{fn.__name__}: {type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=guard, args=(fn, i)) for i, fn in enumerate([uploader, uploader, predictor, predictor, aliaser, deleter])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"errors": errors, "committed": committed, "deleted": deleted}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
