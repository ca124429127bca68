"""Print the README's Mygdalis et al. tables (Table 1, Table 2) from a run's results.json.

.venv/bin/python scripts/mygdalis_tables.py RUN_DIR/results.json
"""

from __future__ import annotations

import json
import sys

from advlab.experiments.builtin.mygdalis2020 import (
    MODEL_ID,
    PAPER_BETA,
    PAPER_DEFENDED,
    PAPER_TABLE1,
    PAPER_UNDEFENDED,
)


def _paper(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rates(row: dict[str, float]) -> str:
    return f"{row['asr']:.1f} ({row['F']:.1f}, {row['D']:.1f})"


def tables(results: dict) -> str:
    out = []
    for name, mid in MODEL_ID.items():
        if name not in results:
            continue
        res = results[name]
        beta = f"{PAPER_BETA[name]:g}"
        out += [f"**MNIST-{mid}** (n = {res['n_undefended']} undefended / {res['n_defended']} defended)", "",
                "| Table 1 | ours | paper |", "| --- | ---: | ---: |"]  # fmt: skip
        out += [
            f"| `{k}` | {v:.2f} | {_paper(PAPER_TABLE1[name].get(k))} |"
            for k, v in res["table1"].items()
        ]
        out += ["", f"| attack | undefended SSIM | MSE x1e3 | ASR | defended SSIM | MSE x1e3 | ASR (F, D) beta = 1 "
                f"| ASR (F, D) beta = {beta} | ASR (F, D) beta = O_d |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for attack, u in res["undefended"].items():
            d = res["defended"][attack]
            p_ssim, p_mse, p_asr = PAPER_UNDEFENDED[name][attack]
            q_ssim, q_mse, q1, qb = PAPER_DEFENDED[name][attack]

            def paper_rates(p):
                return f"{p[0]:.1f} ({p[1]:.1f}, {p[2]:.1f})"

            out.append(
                f"| {attack} | {u['ssim']:.1f} [{p_ssim}] | {u['mse_x1e3']:.2f} [{p_mse:.2f}] | "
                f"{u['asr']:.1f} [{p_asr}] | {d['ssim']:.1f} [{q_ssim}] | {d['mse_x1e3']:.2f} [{q_mse:.2f}] | "
                f"{_rates(d['1'])} [{paper_rates(q1)}] | {_rates(d[beta])} [{paper_rates(qb)}] | {_rates(d['Od'])} |"
            )
        out += ["", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(tables(json.load(open(sys.argv[1]))))
