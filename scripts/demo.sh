#!/usr/bin/env bash
# Set up and run the built-in quick reproduction: Omari et al.'s Algorithm 1 on MNIST
# (Fig. 2a, 2c, 2e, Fig. 3, controls). MNIST is looked for in $ADVLAB_DATA, the user cache,
# or downloaded; when it cannot be had, the same run goes on the scikit-learn 8x8 digits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
profile=quick
if ! .venv/bin/python -c "from advlab.data import load_dataset; load_dataset('mnist', 'test'); load_dataset('mnist', 'train')" 2>/dev/null; then
  echo "advlab: MNIST not found and not downloadable (set ADVLAB_DATA=DIR holding mnist/)." >&2
  echo "advlab: running the quick reproduction on the scikit-learn 8x8 digits instead." >&2
  profile=digits
fi
.venv/bin/advlab reproduce omari2024 --profile "$profile" --out "${OUT:-runs/omari2024-$profile}" "$@"
