#!/usr/bin/env bash
# Set up .venv if needed, then start the explorer app on http://localhost:8501
# Extra arguments go to `streamlit run` (e.g. --server.port 8600).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py --server.headless true \
  --browser.gatherUsageStats false "$@"
