#!/usr/bin/env bash
# Set up and run the built-in quick reproduction: Omari et al.'s Algorithm 1 on MNIST and
# Fashion-MNIST (Fig. 2 a-f, Fig. 3, controls). The IDX files are looked for locally
# ($ADVLAB_DATA, the user cache, Debian's dataset-fashion-mnist); ADVLAB_DOWNLOAD=1 also allows a
# download from the official mirrors. When they cannot be had, the same experiment runs on the
# scikit-learn 8x8 digits, and the script says so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
offline=1
[ "${ADVLAB_DOWNLOAD:-0}" = "1" ] && offline=0
profile=quick
# exit 3: the files are not there (fall back to digits); any other failure (a checksum that does
# not match, a corrupt file) is printed in one line and stops the demo: it is never hidden
# behind the fallback
set +e
ADVLAB_OFFLINE=$offline .venv/bin/advlab data check mnist fashion-mnist
status=$?
set -e
if [ "$status" = 3 ]; then
  echo "advlab: MNIST / Fashion-MNIST not found (set ADVLAB_DATA=DIR holding mnist/ and fashion-mnist/," >&2
  echo "advlab: or ADVLAB_DOWNLOAD=1 to download them); running the quick reproduction on the" >&2
  echo "advlab: scikit-learn 8x8 digits instead." >&2
  profile=digits
elif [ "$status" != 0 ]; then
  echo "advlab: the MNIST / Fashion-MNIST files found are damaged (see above); replace them" >&2
  exit "$status"
fi
.venv/bin/advlab reproduce omari2024 --profile "$profile" --out "${OUT:-runs/omari2024-$profile}" "$@"
