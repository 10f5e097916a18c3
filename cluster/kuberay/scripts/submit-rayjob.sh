#!/bin/sh
# Create this period's RayJob from a template and wait until it ends; run by the raytrain CronJobs.
#
#   TEMPLATE=/templates/rayjob-train-weekly.yaml NAME_PREFIX=pia-msd PERIOD=week sh submit-rayjob.sh
#
# The RayJob's name comes from the period (ISO week: pia-msd-2026w47; UTC day: score-2026-11-23), so a
# retry of the CronJob's pod, or a manual rerun, finds the same RayJob instead of starting a second run:
#   running            -> wait for it
#   succeeded          -> nothing to do
#   failed / stopped   -> delete it and create it again (training keeps its run name, so it resumes
#                         from its checkpoints; scoring replaces that date's output)
# The pod lives as long as the RayJob, which is what makes the CronJob's concurrencyPolicy: Forbid hold.
#
# Environment: TEMPLATE (RayJob YAML with __RUN_NAME__ and __RUN_DATE__), NAME_PREFIX, PERIOD (week | day);
# RUN_DATE=YYYY-MM-DD to backfill another day or week (default: today, UTC); POLL_SECONDS (default 60).
set -eu
: "${TEMPLATE:?}" "${NAME_PREFIX:?}" "${PERIOD:?}"
RUN_DATE=${RUN_DATE:-$(date -u +%F)}
case "$PERIOD" in
  week) RUN_NAME="$NAME_PREFIX-$(date -u -d "$RUN_DATE" +%Gw%V)" ;;
  day) RUN_NAME="$NAME_PREFIX-$RUN_DATE" ;;
  *) echo "PERIOD must be week or day, not '$PERIOD'" >&2; exit 2 ;;
esac

status() { kubectl get rayjob "$RUN_NAME" -o "jsonpath={.status.$1}" 2>/dev/null || true; }
exists() { kubectl get rayjob "$RUN_NAME" >/dev/null 2>&1; }
finished_badly() {
  deployment=$(status jobDeploymentStatus)
  [ "$deployment" = Failed ] || { [ "$deployment" = Complete ] && [ "$(status jobStatus)" != SUCCEEDED ]; }
}

if exists && finished_badly; then
  echo "rayjob/$RUN_NAME ended as $(status jobDeploymentStatus)/$(status jobStatus): deleting it to run it again"
  kubectl delete rayjob "$RUN_NAME" --wait=true
fi
if ! exists; then
  sed -e "s/__RUN_NAME__/$RUN_NAME/g" -e "s/__RUN_DATE__/$RUN_DATE/g" "$TEMPLATE" | kubectl create -f -
  echo "created rayjob/$RUN_NAME from $TEMPLATE"
else
  echo "rayjob/$RUN_NAME already exists: following it"
fi

while :; do
  deployment=$(status jobDeploymentStatus)
  case "$deployment" in
    Complete)
      job=$(status jobStatus)
      if [ "$job" = SUCCEEDED ]; then echo "rayjob/$RUN_NAME succeeded"; exit 0; fi
      echo "rayjob/$RUN_NAME completed with job status $job" >&2
      exit 1 ;;
    Failed)
      echo "rayjob/$RUN_NAME failed: $(status reason) $(status message)" >&2
      exit 1 ;;
  esac
  sleep "${POLL_SECONDS:-60}"
done
