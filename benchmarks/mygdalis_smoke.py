"""Small measured run of the Mygdalis et al. pipeline on MNIST (not the full reproduction).

Trains (or loads from the cache) a zoo model, fits M-SVDD-D on a training subset, and on the
first N correctly classified test images runs L-BFGS, DeepFool, C&W-L2 (targeting the 2nd
ranked label, as L-BFGS) and 1/5/9-A3, crafted on W (undefended) and on W~-LC (defended, then
evaluated on M-SVDD-D at beta = 1 and a given uniform beta). Prints JSON: Table 1 accuracies,
SSIM / MSE / ASR per attack, ASR / F / D under the defense, the rank PMFs of Fig. 4.

    ADVLAB_DATA=../shared/data .venv/bin/python benchmarks/mygdalis_smoke.py --model fc1 --n 30
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from advlab.attacks.evasion import KA3, LBFGS, CarliniWagnerL2, DeepFool
from advlab.data import load_dataset
from advlab.defenses import MSVDDDefense
from advlab.metrics import (
    attack_success_rate,
    defense_outcomes,
    k_anonymity_holds,
    mse,
    rank_position_pmf,
    ssim,
)
from advlab.models import train_classifier

EPOCHS = {"fc1": 10, "lenet5": 8}
PROJECTIONS = {"fc1": 512, "lenet5": 256}


def accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return round(100 * float((pred == y).float().mean()), 2)


def attacks(model: torch.nn.Module, search: dict) -> dict:
    second = lambda x: model(x).topk(2, 1).indices[:, 1]  # noqa: E731
    return {
        "lbfgs": lambda x, y: LBFGS(model, **search)(x, y),
        "deepfool": lambda x, y: DeepFool(model)(x, y),
        "cw": lambda x, y: CarliniWagnerL2(model, binary_search_steps=5, steps=200, targeted=True)(
            x, y, second(x).detach()
        ),
        **{f"{k}-A3": (lambda x, y, k=k: KA3(model, K=k, **search)(x, y)) for k in (1, 5, 9)},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="fc1", choices=sorted(EPOCHS))
    ap.add_argument("--n", type=int, default=30, help="test images attacked")
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--beta", type=float, default=0.85, help="uniform beta of the 2nd column")
    ap.add_argument("--svdd-epochs", type=int, default=5, help="SVDD epochs per phase")
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--table1-only", action="store_true", help="stop after Table 1")
    args = ap.parse_args()
    t0 = time.time()
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    model = train_classifier(args.model, train, test, epochs=EPOCHS[args.model], seed=0).model
    x, y = torch.from_numpy(train.images).float(), torch.from_numpy(train.labels).long()
    xt, yt = torch.from_numpy(test.images).float(), torch.from_numpy(test.labels).long()
    sub = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[: args.train_subset]
    defense = MSVDDDefense(
        n_projections=PROJECTIONS[args.model],
        epochs_positive=args.svdd_epochs,
        epochs_both=args.svdd_epochs,
        finetune_epochs=args.finetune_epochs,
    ).fit(model, x[sub], y[sub])
    linear = defense.linear_model()
    with torch.no_grad():
        table1 = {
            "W-LC": accuracy(model(xt).argmax(1), yt),
            "W~-LC": accuracy(linear(xt).argmax(1), yt),
            "W~-SVDD-Oc": accuracy(defense.predict(xt, "classification"), yt),
            "W~-SVDD-Od": accuracy(defense.predict(xt, "defense"), yt),
        }
    out: dict = {"model": args.model, "n": args.n, "table1": table1, "undefended": {},
                 "defended": {}, "fig4": {}}  # fmt: skip
    if args.table1_only:
        print(json.dumps({**out, "seconds": round(time.time() - t0, 1)}, indent=1))
        return
    search = {"doublings": 4, "bisections": 3, "max_iter": 40}
    for setting, net in (("undefended", model), ("defended", linear)):
        with torch.no_grad():
            ok = (net(xt[:500]).argmax(1) == yt[:500]).nonzero()[:, 0][: args.n]
        xs, ys = xt[ok], yt[ok]
        for name, run in attacks(net, search).items():
            t = time.time()
            res = run(xs, ys)
            row = {"ssim": round(100 * float(ssim(xs, res.x_adv).mean()), 2),
                   "mse": float(mse(xs, res.x_adv).mean()), "seconds": round(time.time() - t, 1)}  # fmt: skip
            if setting == "undefended":
                with torch.no_grad():
                    pmf = rank_position_pmf(model(res.x_adv), ys)
                row["asr"] = attack_success_rate(res.pred, ys)
                out["fig4"][name] = [round(float(p), 3) for p in pmf]
                out["fig4"][name + ".k_anonymous(K=5)"] = k_anonymity_holds(pmf, 5)
            else:
                for beta in (1.0, args.beta):
                    o = defense_outcomes(
                        defense.predict(res.x_adv, beta), ys, defense.adversarial_label
                    )
                    row[f"beta{beta}"] = {"asr": round(o.asr, 2), "F": round(o.failed, 2),
                                          "D": round(o.detected, 2)}  # fmt: skip
            out[setting][name] = row
            print(setting, name, row, flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
