# Sourced by the suites: the Python side of the harnesses, in a venv under
# ~/.cache/watershed (or $WATERSHED_CACHE), with the pinned packages of requirements.txt.
CACHE="${WATERSHED_CACHE:-$HOME/.cache/watershed}"
VENV="$CACHE/bench-venv"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q -r benches/requirements.txt
