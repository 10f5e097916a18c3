#!/usr/bin/env bash
# Run jobs/train_pia.py, adding --resume when the run named by --name already has state under --storage-path.
#
#   bash cluster/scripts/train_or_resume.sh --config configs/msd.yaml --storage-path s3://BUCKET/raytrain/checkpoints \
#       --name pia-msd-2026w47 [any other train_pia.py arguments]
#
# Why: a scheduled run keeps one name for its whole period, so a retry (RayJob backoffLimit, a rerun of the
# CronJob's pod, a person) must continue that run's checkpoints; but the first attempt must not pass
# --resume (train_pia.py refuses to resume a run that does not exist, and refuses to reuse a name
# without it). A failed existence check (no credentials, bad URI) stops here rather than guessing.
# PYTHON picks the interpreter (default: python).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-python}"
storage_path=""
name=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --storage-path) storage_path="${args[i + 1]:-}" ;;
    --storage-path=*) storage_path="${args[i]#*=}" ;;
    --name) name="${args[i + 1]:-}" ;;
    --name=*) name="${args[i]#*=}" ;;
  esac
done
if [[ -z "$storage_path" || -z "$name" ]]; then
  echo "train_or_resume.sh: --storage-path and --name are required (they identify the run to resume)" >&2
  exit 2
fi

state="$(PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" "$python" -c '
import sys
from raytrain import storage
print("exists" if storage.exists(storage.join(sys.argv[1], sys.argv[2])) else "new")
' "$storage_path" "$name")"

if [[ "$state" == exists ]]; then
  echo "train_or_resume.sh: run $name exists under $storage_path: resuming it" >&2
  exec "$python" "$repo/jobs/train_pia.py" "$@" --resume
fi
echo "train_or_resume.sh: no run $name under $storage_path yet: starting it" >&2
exec "$python" "$repo/jobs/train_pia.py" "$@"
