#!/usr/bin/env bash
# Set up .venv if needed, then start the explorer app on http://localhost:8501
# Extra arguments go to `streamlit run` (e.g. --server.port 8600).
# VT_EXPLORER_EXAMPLES: a folder of photos for the example gallery.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the example gallery also shows real photos when the shared data is beside the project
# (an operator may point VT_EXPLORER_EXAMPLES at any folder of photos)
if [ -z "${VT_EXPLORER_EXAMPLES:-}" ] && [ -d ../shared/data/photos ]; then
  export VT_EXPLORER_EXAMPLES="$PWD/../shared/data/photos"
fi
exec .venv/bin/streamlit run app.py --server.headless true \
  --browser.gatherUsageStats false "$@"
