#!/bin/sh
# An example hook: POSTs the event lanekeeper gives on stdin (one JSON object) to
# $LANEKEEPER_WEBHOOK_URL, e.g. a chat or incident webhook. Use it from a lane or from
# lanekeeper.yaml:
#   on_failure: { argv: [sh, jobs/notify-webhook.sh], timeout: 30s }
# LANEKEEPER_LANE, LANEKEEPER_EVENT, LANEKEEPER_REASON, LANEKEEPER_RUN_ID and LANEKEEPER_RESULT
# say what happened; the daemon's environment must carry LANEKEEPER_WEBHOOK_URL.
set -eu
url=${LANEKEEPER_WEBHOOK_URL:?set LANEKEEPER_WEBHOOK_URL in the daemon environment}
exec curl --silent --show-error --fail --max-time 20 \
    -H 'Content-Type: application/json' \
    -H "X-Lanekeeper-Lane: ${LANEKEEPER_LANE:-}" \
    -H "X-Lanekeeper-Event: ${LANEKEEPER_EVENT:-}" \
    --data-binary @- "$url"
